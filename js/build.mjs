// Bundles js/widget.js (with the worklets inlined as text) into rtwidget/notebook/static/widget.js.
// `node js/build.mjs --check` fails if the shipped bundle differs from a fresh build.
import { build } from "esbuild";
import { readFile, writeFile, mkdir } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const outDir = join(here, "..", "rtwidget", "notebook", "static");
const check = process.argv.includes("--check");

const worklets = {
  name: "worklets",
  setup(b) {
    b.onResolve({ filter: /^worklet:/ }, (args) => ({
      path: join(here, `${args.path.slice("worklet:".length)}.worklet.js`), namespace: "worklet",
    }));
    b.onLoad({ filter: /.*/, namespace: "worklet" }, async (args) => {
      const out = await build({ entryPoints: [args.path], bundle: true, write: false,
                                format: "iife", minify: true, legalComments: "none" });
      return { contents: out.outputFiles[0].text, loader: "text" };
    });
  },
};

const result = await build({
  entryPoints: [join(here, "widget.js")], bundle: true, write: false, format: "esm",
  minify: true, legalComments: "none", plugins: [worklets],
});
const bundle = result.outputFiles[0].text;
const css = await readFile(join(here, "widget.css"), "utf8");
const targets = [["widget.js", bundle], ["widget.css", css]];
if (check) {
  let stale = false;
  for (const [name, text] of targets) {
    const shipped = await readFile(join(outDir, name), "utf8").catch(() => "");
    if (shipped !== text) {
      console.error(`rtwidget/notebook/static/${name} is stale: run \`node js/build.mjs\` and commit it`);
      stale = true;
    }
  }
  process.exit(stale ? 1 : 0);
}
await mkdir(outDir, { recursive: true });
for (const [name, text] of targets) await writeFile(join(outDir, name), text);
console.log(`built rtwidget/notebook/static/widget.js (${bundle.length} bytes) and widget.css`);
