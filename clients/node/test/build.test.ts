import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { it } from "node:test";

const run = promisify(execFile);
const root = fileURLToPath(new URL("..", import.meta.url));

it("builds to JavaScript that plain Node imports by the package's name", { timeout: 120_000 }, async () => {
  const tsc = `${root}node_modules/.bin/tsc`;
  await run(tsc, ["-p", "tsconfig.build.json"], { cwd: root });
  // No tsx and no "source" condition: what a user of the package gets.
  const probe = [
    'import { EchoClient, toValue, fromValue } from "@echo-actions/echo-client";',
    "const client = new EchoClient('127.0.0.1:1');",
    "client.close();",
    "console.log(String(fromValue(toValue(2n ** 63n - 1n))));",
  ].join("\n");
  const { stdout } = await run(process.execPath, ["--input-type=module", "-e", probe], { cwd: root });
  assert.equal(stdout.trim(), "9223372036854775807");
});
