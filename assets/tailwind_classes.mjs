// Which Tailwind utility classes: `node tailwind_classes.mjs` reads
// {"css": "...", "files": [...], "tokens": [...]} (JSON) from stdin and prints, as a sorted
// JSON list, the tokens and the candidates Tailwind's own scanner finds in the files that
// compile to CSS with that stylesheet (the same preamble as the studio's build). Used by
// assets/hatch_build.py (`--nicegui-classes`) and tests/studio/test_tailwind_css.py; runs with
// the pinned tailwindcss from this folder's node_modules (npm ci).
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { __unstable__loadDesignSystem } from "@tailwindcss/node";
import { Scanner } from "@tailwindcss/oxide";

const here = path.dirname(fileURLToPath(import.meta.url));
const request = JSON.parse(readFileSync(0, "utf-8"));
const candidates = new Set(request.tokens || []);
if (request.files?.length) {
  const scanner = new Scanner({});
  const changed = request.files.map((file) => ({
    content: readFileSync(file, "utf-8"),
    extension: path.extname(file).slice(1),
  }));
  for (const candidate of scanner.scanFiles(changed)) candidates.add(candidate);
}
const design = await __unstable__loadDesignSystem(request.css, { base: here });
const list = [...candidates].sort();
const compiled = design.candidatesToCss(list);
process.stdout.write(JSON.stringify(list.filter((_, i) => compiled[i])) + "\n");
