// The types the dashboards are checked against, all from the pinned @grafana/schema.
// generate-schema.js turns each exported type below into a JSON Schema definition.
import type { Dashboard } from '@grafana/schema/dist/types/raw/dashboard/x/types.gen';
import type * as timeseries from '@grafana/schema/dist/types/raw/composable/timeseries/panelcfg/x/types.gen';
import type * as stat from '@grafana/schema/dist/types/raw/composable/stat/panelcfg/x/types.gen';
import type * as table from '@grafana/schema/dist/types/raw/composable/table/panelcfg/x/types.gen';
import type { DataQuery } from '@grafana/schema/dist/types/common/common.gen';

/** A dashboard as Grafana stores it (classic JSON model, the one import and provisioning read). */
export type GrafanaDashboard = Dashboard;
/** `options` of a `timeseries` panel. */
export type TimeseriesOptions = timeseries.Options;
/** `fieldConfig.defaults.custom` of a `timeseries` panel. */
export type TimeseriesFieldConfig = timeseries.FieldConfig;
/** `options` of a `stat` panel. */
export type StatOptions = stat.Options;
/** `options` of a `table` panel. */
export type TableOptions = table.Options;
/** `fieldConfig.defaults.custom` of a `table` panel. */
export type TableFieldConfig = table.FieldConfig;
/** The fields every query of every data source has. */
export type Query = DataQuery;
