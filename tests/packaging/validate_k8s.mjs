// Validates Kubernetes objects against the API's own schemas (the OpenAPI definitions that
// kubernetes-models, from the npm registry, compiles into validators).
//
//   node validate_k8s.mjs NODE_MODULES_DIR < objects.json     (a JSON array of objects)
//
// Prints one line per object, "ok <kind>/<name>" or "invalid <kind>/<name>: <why>"; exits 1 if
// any is invalid or of a kind it has no schema for.
import { readFileSync } from "node:fs";
import path from "node:path";

const modules = process.argv[2];
const objects = JSON.parse(readFileSync(0, "utf8"));
let failed = false;
for (const o of objects) {
  const name = `${o.kind}/${o.metadata && o.metadata.name}`;
  // "apps/v1" -> apps/v1/index.mjs; "v1" (the core group) -> v1/index.mjs
  let model;
  for (const index of ["index.mjs", "index.js"]) {
    try {
      model = (await import(path.join(modules, "kubernetes-models", o.apiVersion, index)))[o.kind];
      break;
    } catch (e) {
      model = undefined;
    }
  }
  if (model === undefined) {
    console.log(`invalid ${name}: no schema for ${o.apiVersion} ${o.kind}`);
    failed = true;
    continue;
  }
  try {
    new model(o).validate();
    console.log(`ok ${name}`);
  } catch (e) {
    console.log(`invalid ${name}: ${e.message}`);
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
