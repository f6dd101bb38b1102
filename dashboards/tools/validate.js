#!/usr/bin/env node
// Validates Grafana dashboards against JSON Schemas generated from the pinned
// @grafana/schema (generate-schema.js):
//   - the whole dashboard against the Dashboard type (classic JSON model);
//   - each panel's `options` and `fieldConfig.defaults.custom` against its panel plugin's
//     published Options and FieldConfig types (timeseries, stat, table);
//   - `schemaVersion` equal to the one the package's defaultDashboard carries.
// Usage: validate.js SCHEMA_DIR FILE...            exit 1 on any violation
//        validate.js SCHEMA_DIR --self-test FILE   mutations that must be rejected
'use strict';
const fs = require('fs');
const path = require('path');
const Ajv = require('ajv');

const [schemaDir, ...args] = process.argv.slice(2);
if (!schemaDir || args.length === 0) {
  console.error('usage: validate.js SCHEMA_DIR [--self-test] FILE...');
  process.exit(2);
}
const load = (name) => JSON.parse(fs.readFileSync(path.join(schemaDir, `${name}.schema.json`), 'utf8'));
const ajv = new Ajv({ allErrors: true, strict: false });
const validators = {};
for (const name of ['GrafanaDashboard', 'TimeseriesOptions', 'TimeseriesFieldConfig', 'StatOptions', 'TableOptions', 'TableFieldConfig']) {
  const schema = load(name);
  if (name === 'GrafanaDashboard') {
    // The one relaxation: Grafana stores a data source's annotation query fields (for
    // Prometheus: expr, step, titleFormat, textFormat, tagKeys, useValueForTime) on the
    // annotation object itself; its CUE model leaves AnnotationQuery open for them, the
    // TypeScript type does not list them.
    schema.definitions.AnnotationQuery.additionalProperties = true;
  }
  validators[name] = ajv.compile(schema);
}
const panelSchemas = {
  timeseries: { options: 'TimeseriesOptions', custom: 'TimeseriesFieldConfig' },
  stat: { options: 'StatOptions', custom: null },
  table: { options: 'TableOptions', custom: 'TableFieldConfig' },
};
const { defaultDashboard } = require('@grafana/schema');
const schemaVersion = defaultDashboard.schemaVersion;

function errorsOf(v, where) {
  return (v.errors || []).map((e) => `${where}${e.instancePath} ${e.message}${e.params && e.params.additionalProperty ? ` (${e.params.additionalProperty})` : ''}${e.params && e.params.allowedValues ? ` (${e.params.allowedValues.join(', ')})` : ''}`);
}

function check(dash) {
  const problems = [];
  if (!validators.GrafanaDashboard(dash)) problems.push(...errorsOf(validators.GrafanaDashboard, ''));
  if (dash.schemaVersion !== schemaVersion) {
    problems.push(`/schemaVersion is ${dash.schemaVersion}, @grafana/schema documents ${schemaVersion}`);
  }
  (dash.panels || []).forEach((p, i) => {
    const where = `/panels/${i} (${p.type} "${p.title}")`;
    const s = panelSchemas[p.type];
    if (!s) {
      problems.push(`${where}: panel type ${p.type} not allowed (timeseries, stat, table)`);
      return;
    }
    const vo = validators[s.options];
    if (!vo(p.options || {})) problems.push(...errorsOf(vo, `${where}/options`));
    const custom = p.fieldConfig && p.fieldConfig.defaults && p.fieldConfig.defaults.custom;
    if (s.custom) {
      const vc = validators[s.custom];
      if (!vc(custom || {})) problems.push(...errorsOf(vc, `${where}/fieldConfig/defaults/custom`));
    } else if (custom && Object.keys(custom).length) {
      problems.push(`${where}/fieldConfig/defaults/custom: ${p.type} has no custom field config`);
    }
  });
  return problems;
}

if (args[0] === '--self-test') {
  // Each mutation must be rejected, or the check has lost its teeth.
  const base = JSON.parse(fs.readFileSync(args[1], 'utf8'));
  const firstOf = (d, type) => d.panels.find((p) => p.type === type);
  const mutations = {
    'unknown top-level field': (d) => { d.bogusField = true; },
    'title of the wrong type': (d) => { d.title = 42; },
    'schemaVersion as a string': (d) => { d.schemaVersion = '42'; },
    'old schemaVersion': (d) => { d.schemaVersion = 27; },
    'panel gridPos without h': (d) => { delete d.panels[0].gridPos.h; },
    'unknown panel field': (d) => { d.panels[0].bogus = 1; },
    'unit of the wrong type': (d) => { d.panels[0].fieldConfig.defaults.unit = 5; },
    'unknown variable type': (d) => { d.templating.list[0].type = 'bogus'; },
    'timeseries legend placement': (d) => { firstOf(d, 'timeseries').options.legend.placement = 'middle'; },
    'timeseries custom drawStyle': (d) => { firstOf(d, 'timeseries').fieldConfig.defaults.custom.drawStyle = 'dots'; },
    'stat without reduceOptions': (d) => { delete firstOf(d, 'stat').options.reduceOptions; },
    'panel type graph': (d) => { d.panels[0].type = 'graph'; },
  };
  let failed = 0;
  for (const [name, mutate] of Object.entries(mutations)) {
    const d = JSON.parse(JSON.stringify(base));
    mutate(d);
    const problems = check(d);
    if (problems.length === 0) {
      console.log(`self-test FAILED: "${name}" was accepted`);
      failed++;
    } else {
      console.log(`self-test ok: "${name}" rejected: ${problems[0]}`);
    }
  }
  console.log(`self-test: ${Object.keys(mutations).length - failed} of ${Object.keys(mutations).length} mutations rejected`);
  process.exit(failed ? 1 : 0);
}

let bad = 0;
for (const file of args) {
  let dash;
  try {
    dash = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    console.log(`${file}: not JSON: ${e.message}`);
    bad++;
    continue;
  }
  const problems = check(dash);
  if (problems.length) {
    bad++;
    console.log(`${file}: INVALID (${problems.length} problems)`);
    for (const p of problems) console.log(`  ${p}`);
  } else {
    console.log(`${file}: valid (schemaVersion ${dash.schemaVersion}, ${dash.panels.length} panels)`);
  }
}
console.log(`${args.length - bad} of ${args.length} dashboards valid against @grafana/schema ${require('@grafana/schema/package.json').version}`);
process.exit(bad ? 1 : 0);
