import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile, rm, writeFile } from "node:fs/promises";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { it } from "node:test";
import { FakeEcho } from "./fake-server.js";

const run = promisify(execFile);
const here = fileURLToPath(new URL(".", import.meta.url));

it("the README's examples run and print what their comments say", { timeout: 60_000 }, async () => {
  const readme = await readFile(new URL("../README.md", import.meta.url), "utf8");
  const examples = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)].map((match) => match[1] ?? "");
  assert.equal(examples.length, 2, "the README has the tour and the event filter example");

  let server: FakeEcho | undefined;
  let target = process.env["ECHO_TARGET"];
  if (!target) {
    server = new FakeEcho();
    target = await server.start();
  }
  // Inside the package, so that its own name resolves (to src/index.ts under
  // the "source" condition).
  const script = `${here}readme-example.tmp.ts`;
  try {
    for (const example of examples) {
      assert.ok(example.trim().split("\n").length <= 12, "each example stays short");
      await writeFile(script, example);
      const { stdout }: { stdout: string } = await run(process.execPath, ["--conditions=source", "--import", "tsx", script], {
        env: { ...process.env, ECHO_TARGET: target },
        timeout: 30_000,
      });
      const expected = [...example.matchAll(/\/\/ ([a-z]+: [^\s,]+)/g)].map((m) => m[1]);
      assert.ok(expected.length > 0, "each example says what it prints");
      assert.deepEqual(stdout.trim().split("\n"), expected);
    }
  } finally {
    await rm(script, { force: true });
    await server?.stop();
  }
});
