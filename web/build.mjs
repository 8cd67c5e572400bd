// Builds web/dist: the pages in src/ plus the browser builds of the npm packages they load,
// copied out of node_modules so that the service serves every file itself (no CDN at run time).
import { cpSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const dist = join(here, "dist");
const modules = join(here, "node_modules");

// [package, file inside the package, name under dist/vendor/]
const VENDOR = [
  ["react", "umd/react.production.min.js", "react.production.min.js"],
  ["react-dom", "umd/react-dom.production.min.js", "react-dom.production.min.js"],
  ["graphiql", "graphiql.min.js", "graphiql.min.js"],
  ["graphiql", "graphiql.min.css", "graphiql.min.css"],
  ["@graphiql/plugin-explorer", "dist/index.umd.js", "plugin-explorer.umd.js"],
  ["@graphiql/plugin-explorer", "dist/style.css", "plugin-explorer.css"],
  ["graphql-ws", "umd/graphql-ws.min.js", "graphql-ws.min.js"],
];

rmSync(dist, { recursive: true, force: true });
mkdirSync(join(dist, "vendor"), { recursive: true });
const versions = {};
for (const [pkg, file, name] of VENDOR) {
  cpSync(join(modules, pkg, file), join(dist, "vendor", name));
  versions[pkg] = JSON.parse(readFileSync(join(modules, pkg, "package.json"), "utf8")).version;
}
cpSync(join(here, "src"), dist, { recursive: true });
writeFileSync(join(dist, "manifest.json"), JSON.stringify({ versions }, null, 2) + "\n");
console.log(`web/dist built: ${Object.entries(versions).map(([p, v]) => `${p}@${v}`).join(", ")}`);
