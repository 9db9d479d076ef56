// Build a rapidwasm app written in JavaScript into a WebAssembly component:
//
//   node build.mjs SOURCE.js WIT_DIR OUT.wasm
//
// SOURCE.js exports `app` (see rapidwasm.js). The component targets the
// `app-plugin` world and imports no wasi:http: apps get no network.
import { componentize } from "@bytecodealliance/componentize-js";
import { writeFile } from "node:fs/promises";

const [source, wit, out] = process.argv.slice(2);
if (!source || !wit || !out) {
  console.error("usage: node build.mjs SOURCE.js WIT_DIR OUT.wasm");
  process.exit(2);
}
const { component } = await componentize({
  sourcePath: source,
  witPath: wit,
  worldName: "app-plugin",
  disableFeatures: ["http", "fetch-event"],
});
await writeFile(out, component);
console.log(`built ${out} (${component.length} bytes)`);
