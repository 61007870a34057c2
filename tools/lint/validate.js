// validate.js - `make lint`'s second checker: the served OpenAPI document
// (the file named on the command line) through @apidevtools/swagger-parser,
// which parses it, resolves every $ref and validates it against the
// OpenAPI schema of its version. Exit status 0 valid, 1 not (with why).
"use strict";
const SwaggerParser = require("@apidevtools/swagger-parser");

const file = process.argv[2];
if (!file) {
  console.error("usage: node validate.js OPENAPI.json");
  process.exit(2);
}
SwaggerParser.validate(file).then(
  (api) => {
    const operations = Object.values(api.paths || {}).reduce(
      (n, item) => n + Object.keys(item).filter((k) => k !== "parameters").length, 0);
    console.log(`swagger-parser: ${file} is a valid OpenAPI ${api.openapi} document ` +
                `(${operations} operations)`);
  },
  (error) => {
    console.error(`swagger-parser: ${file}: ${error.message}`);
    process.exit(1);
  });
