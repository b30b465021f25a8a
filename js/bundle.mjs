// esbuild bundling shared by the build and the tests, so the tests run what ships: a module
// with its imports inlined, and each `worklet:<name>` import as the text of
// js/<name>.worklet.js bundled on its own (an AudioWorklet loads its module from a URL).
import { build } from "esbuild";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const HERE = dirname(fileURLToPath(import.meta.url));

const worklets = {
  name: "worklets",
  setup(b) {
    b.onResolve({ filter: /^worklet:/ }, (args) => ({
      path: join(HERE, `${args.path.slice("worklet:".length)}.worklet.js`), namespace: "worklet",
    }));
    b.onLoad({ filter: /.*/, namespace: "worklet" }, async (args) => {
      const out = await build({ entryPoints: [args.path], bundle: true, write: false,
                                format: "iife", minify: true, legalComments: "none" });
      return { contents: out.outputFiles[0].text, loader: "text" };
    });
  },
};

/** The ES module `entry` (a file name in js/) as one bundle's text. */
export async function bundle(entry, { minify = false } = {}) {
  const result = await build({
    entryPoints: [join(HERE, entry)], bundle: true, write: false, format: "esm", minify,
    legalComments: "none", plugins: [worklets],
  });
  return result.outputFiles[0].text;
}

/** Import the bundle of `entry` (for the tests: no browser, no files written). */
export async function importBundle(entry) {
  const text = await bundle(entry);
  return import(`data:text/javascript,${encodeURIComponent(text)}`);
}
