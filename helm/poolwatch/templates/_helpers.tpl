{{/* Names, labels and the image reference. */}}

{{- define "poolwatch.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "poolwatch.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "poolwatch.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "poolwatch.selectorLabels" -}}
app.kubernetes.io/name: {{ include "poolwatch.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "poolwatch.labels" -}}
helm.sh/chart: {{ include "poolwatch.chart" . }}
{{ include "poolwatch.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "poolwatch.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "poolwatch.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
[registry/]repository:tag, or [registry/]repository@digest when a digest is given.
*/}}
{{- define "poolwatch.image" -}}
{{- $repository := .Values.image.repository }}
{{- with .Values.image.registry }}
{{- $repository = printf "%s/%s" . $repository }}
{{- end }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" $repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (default .Chart.AppVersion .Values.image.tag | toString) }}
{{- end }}
{{- end }}

{{/*
Whether the cluster serves a Prometheus Operator kind (monitoring.coreos.com/v1/<kind>):
"true" or "". helm install and upgrade ask the cluster; helm template knows only what
--api-versions tells it.
*/}}
{{- define "poolwatch.operatorServes" -}}
{{- if .ctx.Capabilities.APIVersions.Has (printf "monitoring.coreos.com/v1/%s" .kind) }}true{{ end }}
{{- end }}

{{/* The Secret that holds the database URL, or nothing (push-only). */}}
{{- define "poolwatch.databaseSecretName" -}}
{{- if .Values.database.existingSecret }}
{{- .Values.database.existingSecret }}
{{- else if .Values.database.url }}
{{- printf "%s-database" (include "poolwatch.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/* Where the Secret's key is mounted; poolwatch reads it with --database-url-file. */}}
{{- define "poolwatch.databaseUrlFile" -}}
/etc/poolwatch/secret/{{ .Values.database.secretKey }}
{{- end }}

{{- define "poolwatch.configFile" -}}
/etc/poolwatch/config/poolwatch.yaml
{{- end }}

{{/*
The web configuration (webConfig): the Secret is mounted at this directory, and poolwatch reads
web-config.yml from it (POOLWATCH_WEB_CONFIG_FILE).
*/}}
{{- define "poolwatch.webConfigDir" -}}
/etc/poolwatch/web
{{- end }}

{{- define "poolwatch.webConfigFile" -}}
{{ include "poolwatch.webConfigDir" . }}/web-config.yml
{{- end }}

{{/*
The listen address and the web configuration, as environment variables rather than flags:
`kubectl exec ... -- /poolwatch connections` (or healthcheck) inherits the container's
environment but not its arguments, and finds the daemon's port and scheme in them. Takes
(dict "ctx" <chart context> "port" <port>).
*/}}
{{- define "poolwatch.clientEnv" -}}
- name: POOLWATCH_LISTEN_ADDRESS
  value: "[::]:{{ .port }}"
{{- if .ctx.Values.webConfig.existingSecret }}
- name: POOLWATCH_WEB_CONFIG_FILE
  value: {{ include "poolwatch.webConfigFile" .ctx }}
{{- end }}
{{- end }}

{{/* Fails the render on webConfig values that cannot work together. */}}
{{- define "poolwatch.webConfig.check" -}}
{{- $web := .Values.webConfig }}
{{- if and (or $web.tls $web.clientCertRequired) (not $web.existingSecret) }}
{{- fail "webConfig.tls and webConfig.clientCertRequired describe the file in webConfig.existingSecret: set webConfig.existingSecret (a Secret with web-config.yml and the certificate files) too" }}
{{- end }}
{{- if and $web.clientCertRequired (not $web.tls) }}
{{- fail "webConfig.clientCertRequired (client_auth_type: RequireAndVerifyClientCert) needs webConfig.tls: true" }}
{{- end }}
{{- end }}

{{/*
A probe of the values, adapted to the listeners: an httpGet probe without a port probes the
container's port ("port", its name); with webConfig.tls an httpGet probe gets scheme: HTTPS;
with webConfig.clientCertRequired it becomes a tcpSocket probe on the same port, since the
kubelet presents no client certificate. Other probes (exec, tcpSocket, grpc) are kept as they
are. Takes (dict "probe" <probe> "ctx" <chart context> "port" <port name>).
*/}}
{{- define "poolwatch.probe" -}}
{{- $probe := deepCopy .probe }}
{{- $web := .ctx.Values.webConfig }}
{{- if and (hasKey $probe "httpGet") (not $probe.httpGet.port) }}
{{- $_ := set $probe.httpGet "port" .port }}
{{- end }}
{{- if and $web.existingSecret (hasKey $probe "httpGet") }}
{{- if $web.clientCertRequired }}
{{- $tcp := dict "port" $probe.httpGet.port }}
{{- with $probe.httpGet.host }}
{{- $_ := set $tcp "host" . }}
{{- end }}
{{- $_ := unset $probe "httpGet" }}
{{- $_ := set $probe "tcpSocket" $tcp }}
{{- else if $web.tls }}
{{- $_ := set $probe.httpGet "scheme" "HTTPS" }}
{{- end }}
{{- end }}
{{- toYaml $probe }}
{{- end }}
