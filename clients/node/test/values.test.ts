import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { create } from "@bufbuild/protobuf";
import { anyPack, DurationSchema } from "@bufbuild/protobuf/wkt";
import { double, fromValue, Json, parseJson, stringifyJson, toValue } from "../src/index.js";

describe("values", () => {
  it("keeps the int64 extremes exact both ways", () => {
    for (const n of [2n ** 63n - 1n, -(2n ** 63n), 0n, 1n]) {
      const value = toValue(n);
      assert.deepEqual(value.kind, { case: "intValue", value: n });
      assert.equal(fromValue(value), n);
    }
  });

  it("refuses an integer outside int64 instead of wrapping it", () => {
    assert.throws(() => toValue(2n ** 63n), RangeError);
    assert.throws(() => toValue(-(2n ** 63n) - 1n), RangeError);
  });

  it("sends a whole number as an int64 and a fraction or double() as a double", () => {
    assert.equal(toValue(7).kind.case, "intValue");
    assert.equal(toValue(0.5).kind.case, "doubleValue");
    assert.equal(toValue(double(7)).kind.case, "doubleValue");
    assert.equal(toValue(2 ** 60).kind.case, "doubleValue", "an unsafe integer number is already a double");
  });

  it("reads an int64 back as a bigint, so an integer is never a double", () => {
    assert.equal(typeof fromValue(toValue(1)), "bigint");
    assert.equal(typeof fromValue(toValue(double(1))), "number");
  });

  it("carries strings, booleans, bytes, JSON and packed messages", () => {
    const bytes = new Uint8Array([0, 1, 255]);
    assert.equal(fromValue(toValue("héllo")), "héllo");
    assert.equal(fromValue(toValue(false)), false);
    assert.deepEqual(fromValue(toValue(bytes)), bytes);
    assert.deepEqual(fromValue(toValue(Json.of({ a: 1 }))), new Json('{"a":1}'));
    const packed = anyPack(DurationSchema, create(DurationSchema, { seconds: 3n }));
    assert.equal(fromValue(toValue(packed)), packed);
    assert.equal(fromValue(undefined), undefined);
  });

  it("refuses what has no Echo form", () => {
    assert.throws(() => toValue({} as never), TypeError);
  });
});

describe("JSON with big integers", () => {
  it("round-trips integers beyond 2^53 digit for digit", () => {
    const text = '{"max":9223372036854775807,"min":-9223372036854775808,"one":1,"half":0.5,"list":[18446744073709551615,-0]}';
    const value = parseJson(text) as Record<string, unknown>;
    assert.equal(value["max"], 2n ** 63n - 1n);
    assert.equal(value["min"], -(2n ** 63n));
    assert.equal(value["one"], 1);
    assert.equal(value["half"], 0.5);
    assert.deepEqual(value["list"], [2n ** 64n - 1n, -0]);
    assert.equal(stringifyJson(value), text.replace("-0]", "0]"));
  });

  it("reads strings, escapes, literals and nesting like JSON.parse", () => {
    const text = ' { "s" : "a\\"b\\u00e9\\n" , "t":true,"f":false,"n":null,"e":[],"o":{},"x":1e3,"y":-2.5E-1 } ';
    assert.deepEqual(parseJson(text), JSON.parse(text));
  });

  it("keeps a __proto__ key as plain data", () => {
    const value = parseJson('{"__proto__":{"polluted":1}}') as Record<string, unknown>;
    assert.deepEqual(Object.keys(value), ["__proto__"]);
    assert.equal(({} as Record<string, unknown>)["polluted"], undefined);
  });

  it("rejects malformed text with its offset", () => {
    for (const bad of ["", "{", "[1,]", '{"a" 1}', "01", "1 2", "'x'", "nul"]) {
      assert.throws(() => parseJson(bad), SyntaxError, bad);
    }
  });

  it("refuses a number JSON cannot hold instead of writing null", () => {
    assert.throws(() => stringifyJson(Number.NaN), RangeError);
    assert.equal(stringifyJson({ a: undefined, b: [undefined] }), '{"b":[null]}');
  });
});
