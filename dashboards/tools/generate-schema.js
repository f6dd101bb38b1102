#!/usr/bin/env node
// Generates JSON Schemas from the TypeScript types of the pinned @grafana/schema package
// (see schema-entry.ts), one file per type, into the directory given as the first argument.
'use strict';
const fs = require('fs');
const path = require('path');
const tsj = require('ts-json-schema-generator');

const out = process.argv[2];
if (!out) {
  console.error('usage: generate-schema.js OUT_DIR');
  process.exit(2);
}
fs.mkdirSync(out, { recursive: true });
const types = [
  'GrafanaDashboard',
  'TimeseriesOptions',
  'TimeseriesFieldConfig',
  'StatOptions',
  'TableOptions',
  'TableFieldConfig',
  'Query',
];
const config = {
  path: path.join(__dirname, 'schema-entry.ts'),
  tsconfig: path.join(__dirname, 'tsconfig.json'),
  skipTypeCheck: true,
  // Interfaces without an index signature admit no other keys: a misspelt or unknown
  // field is an error, as in Grafana's own Go and CUE models.
  additionalProperties: false,
  expose: 'export',
  jsDoc: 'basic',
};
const generator = tsj.createGenerator(config);
for (const type of types) {
  const schema = generator.createSchema(type);
  fs.writeFileSync(path.join(out, `${type}.schema.json`), JSON.stringify(schema, null, 2) + '\n');
}
const pkg = require('@grafana/schema/package.json');
fs.writeFileSync(path.join(out, 'VERSION'), `${pkg.version}\n`);
console.log(`generated ${types.length} schemas from @grafana/schema ${pkg.version}`);
