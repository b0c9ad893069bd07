/**
 * Plain JavaScript values to and from the contract's typed `Value`.
 *
 * A `bigint` is an int64 and a `number` is a double, so an integer read back
 * is always a `bigint` and can never have turned into 1.0 on the way. For
 * convenience a `number` that is a safe integer is sent as an int64 (the
 * server widens an int64 into a double parameter, never the reverse); wrap it
 * with `double()` to send a double anyway.
 */

import { create } from "@bufbuild/protobuf";
import type { Any } from "@bufbuild/protobuf/wkt";
import { type Value, ValueSchema } from "./gen/echo/v1/action_pb.js";
import { parseJson, stringifyJson } from "./json.js";

/** A JSON document, kept as text so that no integer loses a digit. */
export class Json {
  constructor(readonly text: string) {}

  /** The JSON text of `value`; a `bigint` is written as its digits. */
  static of(value: unknown): Json {
    return new Json(stringifyJson(value));
  }

  /** The document, with integers beyond 2^53 as `bigint`. */
  parse(): unknown {
    return parseJson(this.text);
  }

  toString(): string {
    return this.text;
  }
}

/** A number to send as a double even when it has no fraction. */
export class Double {
  constructor(readonly value: number) {}
}

/** Marks `value` to be sent as a double. */
export function double(value: number): Double {
  return new Double(value);
}

/** What an argument may be. */
export type Arg = string | number | bigint | boolean | Uint8Array | Json | Double | Any | Value;

/** What a result may be; `undefined` when the action returns nothing. */
export type Result = string | bigint | number | boolean | Uint8Array | Json | Any | undefined;

const INT64_MIN = -(2n ** 63n);
const INT64_MAX = 2n ** 63n - 1n;

function isMessage(arg: object, typeName: string): boolean {
  return (arg as { $typeName?: unknown }).$typeName === typeName;
}

/** Converts one argument to a `Value`; throws RangeError or TypeError. */
export function toValue(arg: Arg): Value {
  switch (typeof arg) {
    case "string":
      return create(ValueSchema, { kind: { case: "stringValue", value: arg } });
    case "boolean":
      return create(ValueSchema, { kind: { case: "boolValue", value: arg } });
    case "bigint":
      if (arg < INT64_MIN || arg > INT64_MAX) throw new RangeError(`${arg} does not fit int64`);
      return create(ValueSchema, { kind: { case: "intValue", value: arg } });
    case "number":
      return Number.isSafeInteger(arg)
        ? create(ValueSchema, { kind: { case: "intValue", value: BigInt(arg) } })
        : create(ValueSchema, { kind: { case: "doubleValue", value: arg } });
  }
  if (arg instanceof Double) {
    return create(ValueSchema, { kind: { case: "doubleValue", value: arg.value } });
  }
  if (arg instanceof Json) {
    return create(ValueSchema, { kind: { case: "jsonValue", value: arg.text } });
  }
  if (arg instanceof Uint8Array) {
    return create(ValueSchema, { kind: { case: "bytesValue", value: arg } });
  }
  if (isMessage(arg, "echo.v1.Value")) return arg as Value;
  if (isMessage(arg, "google.protobuf.Any")) {
    return create(ValueSchema, { kind: { case: "messageValue", value: arg as Any } });
  }
  throw new TypeError(`cannot send ${Object.prototype.toString.call(arg)} as an Echo value`);
}

/** Converts a `Value` back to a plain value. */
export function fromValue(value: Value | undefined): Result {
  const kind = value?.kind;
  switch (kind?.case) {
    case undefined:
      return undefined;
    case "jsonValue":
      return new Json(kind.value);
    default:
      return kind?.value;
  }
}
