/**
 * JSON text with integers kept exact.
 *
 * `JSON.parse` reads every number as a double, so 9223372036854775807 comes
 * back as 9223372036854776000. Here an integer that fits a double exactly
 * stays a `number` and a larger one becomes a `bigint`; `stringifyJson`
 * writes a `bigint` as its digits. A fraction or an exponent is always a
 * `number`. JavaScript cannot tell 1 from 1.0, so a JSON `1.0` comes back
 * out as `1`: still the same value, never an integer turned into a fraction.
 */

const INTEGER = /^-?(?:0|[1-9][0-9]*)$/;
const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const STRING = /"(?:[^"\\\u0000-\u001f]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*"/y;
const SPACE = /[ \t\n\r]*/y;

/** Parses JSON text; integers beyond 2^53 become `bigint`. */
export function parseJson(text: string): unknown {
  const parser = new Parser(text);
  const value = parser.value();
  parser.space();
  if (parser.at < text.length) parser.fail("unexpected text after the value");
  return value;
}

/**
 * Writes a value as JSON text, `bigint` as plain digits. Like
 * `JSON.stringify` it skips `undefined` members and calls `toJSON`; unlike it,
 * a non-finite number is an error rather than a silent `null`.
 */
export function stringifyJson(value: unknown): string {
  const out = write(value);
  if (out === undefined) throw new TypeError("value has no JSON form");
  return out;
}

function write(value: unknown): string | undefined {
  if (value === null) return "null";
  if (typeof value === "object" && typeof (value as { toJSON?: unknown }).toJSON === "function") {
    return write((value as { toJSON(): unknown }).toJSON());
  }
  switch (typeof value) {
    case "string":
      return JSON.stringify(value);
    case "boolean":
      return value ? "true" : "false";
    case "bigint":
      return value.toString();
    case "number":
      if (!Number.isFinite(value)) throw new RangeError(`${value} has no JSON form`);
      return JSON.stringify(value);
    case "object":
      if (Array.isArray(value)) return `[${value.map((item) => write(item) ?? "null").join(",")}]`;
      return `{${Object.entries(value as object)
        .flatMap(([key, item]) => {
          const text = write(item);
          return text === undefined ? [] : [`${JSON.stringify(key)}:${text}`];
        })
        .join(",")}}`;
    default:
      return undefined;
  }
}

class Parser {
  at = 0;

  constructor(private readonly text: string) {}

  fail(why: string): never {
    throw new SyntaxError(`bad JSON at offset ${this.at}: ${why}`);
  }

  space(): void {
    SPACE.lastIndex = this.at;
    SPACE.exec(this.text);
    this.at = SPACE.lastIndex;
  }

  private token(pattern: RegExp): string | undefined {
    pattern.lastIndex = this.at;
    const match = pattern.exec(this.text);
    if (match === null) return undefined;
    this.at = pattern.lastIndex;
    return match[0];
  }

  private literal(word: string): boolean {
    if (!this.text.startsWith(word, this.at)) return false;
    this.at += word.length;
    return true;
  }

  value(): unknown {
    this.space();
    const c = this.text[this.at];
    if (c === "{") return this.object();
    if (c === "[") return this.array();
    if (c === '"') return this.string();
    if (this.literal("true")) return true;
    if (this.literal("false")) return false;
    if (this.literal("null")) return null;
    const number = this.token(NUMBER);
    if (number === undefined) this.fail("expected a value");
    if (!INTEGER.test(number)) return Number(number);
    const exact = Number(number);
    return Number.isSafeInteger(exact) ? exact : BigInt(number);
  }

  private string(): string {
    const token = this.token(STRING);
    if (token === undefined) this.fail("bad string");
    return JSON.parse(token) as string;
  }

  private expect(c: string): void {
    this.space();
    if (this.text[this.at] !== c) this.fail(`expected ${JSON.stringify(c)}`);
    this.at += 1;
  }

  private more(close: string): boolean {
    this.space();
    if (this.text[this.at] === close) {
      this.at += 1;
      return false;
    }
    this.expect(",");
    return true;
  }

  private array(): unknown[] {
    this.at += 1;
    const items: unknown[] = [];
    this.space();
    if (this.text[this.at] === "]") {
      this.at += 1;
      return items;
    }
    do items.push(this.value());
    while (this.more("]"));
    return items;
  }

  private object(): Record<string, unknown> {
    this.at += 1;
    const members: Record<string, unknown> = {};
    this.space();
    if (this.text[this.at] === "}") {
      this.at += 1;
      return members;
    }
    do {
      this.space();
      const key = this.string();
      this.expect(":");
      // defineProperty, so that a key such as "__proto__" stays plain data.
      Object.defineProperty(members, key, {
        value: this.value(),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    } while (this.more("}"));
    return members;
  }
}
