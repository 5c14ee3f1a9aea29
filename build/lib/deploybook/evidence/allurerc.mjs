// Allure 3 configuration for deploybook's release report.
//
// deploybook.evidence.report runs `allure generate RESULTS -o OUT --config allurerc.mjs` and passes
// the per-run parts through environment variables, so this one file serves both the pytest
// plugin and someone regenerating a report by hand:
//   DEPLOYBOOK_REPORT_NAME    title shown at the top of the report
//   DEPLOYBOOK_ALLURE_RESULTS results folder; its categories.json feeds the report, which
//                             reads categories from the config, not from the results
//   DEPLOYBOOK_ALLURE_HISTORY history.jsonl carried from the previous run (Allure appends)
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

const resultsDir = process.env.DEPLOYBOOK_ALLURE_RESULTS ?? "allure-results";
const categoriesFile = join(resultsDir, "categories.json");

function categories() {
  if (!existsSync(categoriesFile)) {
    return undefined;
  }
  return JSON.parse(readFileSync(categoriesFile, "utf-8"));
}

const reportName = process.env.DEPLOYBOOK_REPORT_NAME ?? "deploybook release";

export default {
  name: reportName,
  historyPath: process.env.DEPLOYBOOK_ALLURE_HISTORY || undefined,
  categories: categories(),
  plugins: {
    // The allure2 plugin (the classic report's look), not "awesome": in Allure 3.18.0 the
    // awesome, classic and dashboard plugins always embed a Google Tag Manager script, so
    // every reader of the evidence would call a third party; allure2 leaves it out when
    // ALLURE_NO_ANALYTICS=true, which deploybook.evidence.report always sets.
    allure2: {
      options: {
        // One self-contained index.html: attachable to a release, opens with no server.
        singleFile: true,
        reportLanguage: "en",
        reportName,
      },
    },
  },
};
