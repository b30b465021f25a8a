// Bundles js/widget.js and the modules it imports (with the worklets inlined as text) into
// rtwidget/notebook/static/widget.js. `node js/build.mjs --check` fails if the shipped bundle
// differs from a fresh build.
import { readFile, writeFile, mkdir } from "node:fs/promises";
import { join } from "node:path";
import { bundle, HERE } from "./bundle.mjs";

const outDir = join(HERE, "..", "rtwidget", "notebook", "static");
const check = process.argv.includes("--check");

const js = await bundle("widget.js", { minify: true });
const css = await readFile(join(HERE, "widget.css"), "utf8");
const targets = [["widget.js", js], ["widget.css", css]];
if (check) {
  let stale = false;
  for (const [name, text] of targets) {
    const shipped = await readFile(join(outDir, name), "utf8").catch(() => "");
    if (shipped !== text) {
      console.error(`rtwidget/notebook/static/${name} is stale: run \`node js/build.mjs\` ` +
                    "and commit it");
      stale = true;
    }
  }
  process.exit(stale ? 1 : 0);
}
await mkdir(outDir, { recursive: true });
for (const [name, text] of targets) await writeFile(join(outDir, name), text);
console.log(`built rtwidget/notebook/static/widget.js (${js.length} bytes) and widget.css`);
