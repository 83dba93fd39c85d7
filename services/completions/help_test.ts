import assert from "node:assert/strict";
import { Command } from "commander";
import { parseHelp } from "./help.ts";
import { bashScript, fishScript } from "./scripts.ts";

function helpText(program: Command): string {
  let text = "";
  program.configureOutput({ writeOut: (s) => text += s });
  program.outputHelp();
  return text;
}

Deno.test("completions: commander's help gives the flags, their values and the subcommands", () => {
  const program = new Command().name("deno task demo")
    .option("--config <file>", "read settings from this monitor.yaml (flags override it)")
    .option(
      "--log-format <format>",
      "text | json, one object a line (default: log_format, else text)",
    )
    .option("--supervised", "run under the supervisor: no console, print monitor:ready when ready");
  program.command("try <url>").description("try a plugin").option("--sample <json>", "a sample");
  const help = parseHelp(helpText(program));
  assert.deepEqual(help.commands, ["try"]);
  assert.deepEqual(help.options.map((o) => [o.flag, o.takesValue, o.placeholder, o.choices]), [
    ["--config", true, "file", []],
    ["--log-format", true, "format", ["text", "json"]],
    ["--supervised", false, undefined, []],
    ["--help", false, undefined, []],
  ]);
  assert.match(help.options[2].description, /print monitor:ready when ready$/);
});

Deno.test("completions: a word that is not plain never reaches a script", () => {
  const tasks = [{
    name: "x;rm -rf /",
    description: "",
  }];
  assert.throws(() => bashScript(tasks), /not a plain word/);
  // fish quotes descriptions.
  const fish = fishScript([{
    name: "demo",
    description: "it's",
    help: { options: [], commands: [] },
  }]);
  assert.match(fish, /-d 'it\\'s'/);
});
