// Allure 3's report engine, loaded before the report is due (deploybook.evidence.report).
//
//   node generate.mjs ALLURE_PACKAGE_DIR
//
// imports the engine of the project's pinned Allure (most of what `allure generate` spends)
// and waits. One line of JSON on stdin then says what to generate:
//   {"cwd": DIR, "config": FILE, "results": DIR, "output": DIR, "env": {NAME: VALUE, ...}}
// and it does what `allure generate RESULTS -o OUTPUT --config FILE` does in DIR, with the
// variables of "env" set first (the configuration reads them). Stdin closed without a line:
// nothing to generate, exit 0.
import { createRequire } from "node:module";
import { dirname, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

function from(packageDir, name) {
  return pathToFileURL(createRequire(resolve(packageDir, "package.json")).resolve(name)).href;
}

const coreUrl = from(process.argv[2], "@allurereport/core");
const core = await import(coreUrl);
// The plugin the configuration names, resolved as the engine resolves it: the import is cached.
await import(from(dirname(dirname(fileURLToPath(coreUrl))), "@allurereport/plugin-allure2"));

let input = "";
process.stdin.setEncoding("utf-8");
for await (const chunk of process.stdin) {
  input += chunk;
}
if (input.trim() === "") {
  process.exit(0);
}
const job = JSON.parse(input);
Object.assign(process.env, job.env ?? {});
try {
  const config = await core.readConfig(job.cwd, job.config, { output: job.output });
  const report = new core.AllureReport(config);
  await report.restoreState([]);
  await report.start();
  await report.readDirectory(job.results);
  await report.done();
} catch (error) {
  console.error(`allure generate failed: ${error?.message ?? error}`);
  process.exit(1);
}
