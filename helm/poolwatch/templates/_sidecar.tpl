{{/*
Sidecar mode: poolwatch as a container of the application's own pod.

Add this chart as a dependency of the application's chart (with mode: sidecar), then include
ONE of these two templates in the application's pod spec, passing the dependency's context
.Subcharts.poolwatch (its values, with your overrides under the poolwatch: key):

  Kubernetes native sidecar (1.29+; started before the application, stopped after it, so the
  last pushes are still scraped):

    spec:
      initContainers:
        {{- include "poolwatch.sidecar.initContainer" .Subcharts.poolwatch | nindent 8 }}
      containers:
        - name: app
          ...

  Classic extra container (any Kubernetes version):

    spec:
      containers:
        - name: app
          ...
        {{- include "poolwatch.sidecar.container" .Subcharts.poolwatch | nindent 8 }}

Both render one list item. The sidecar serves /metrics on the pod IP (sidecar.port, scraped
by the PodMonitor this chart renders) and takes pushes on the pod's loopback only
(sidecar.pushAddress, default 127.0.0.1:19188): the application pushes to
http://127.0.0.1:19188/api/v1/pools/<app>/<pool>. POD_NAME (the default instance label of
pushes) and POD_IP (attribution of the pod's own backends) come from the downward API.
helm/examples/sidecar-app/ is a complete example.
*/}}

{{- define "poolwatch.sidecar.container" -}}
{{- include "poolwatch.sidecar.spec" (dict "ctx" . "native" false) }}
{{- end }}

{{- define "poolwatch.sidecar.initContainer" -}}
{{- include "poolwatch.sidecar.spec" (dict "ctx" . "native" true) }}
{{- end }}

{{- define "poolwatch.sidecar.spec" -}}
{{- $ctx := .ctx }}
{{- $s := $ctx.Values.sidecar -}}
- name: {{ $s.name }}
  image: {{ include "poolwatch.image" $ctx }}
  imagePullPolicy: {{ $ctx.Values.image.pullPolicy }}
  {{- if .native }}
  restartPolicy: Always
  {{- end }}
  args:
    - --mode=sidecar
    - --listen=0.0.0.0:{{ $s.port }}
    - --push-listen={{ $s.pushAddress }}
    - --log-level={{ $s.logLevel }}
    - --log-format={{ $s.logFormat }}
    {{- with $s.extraArgs }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  env:
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    - name: POD_IP
      valueFrom:
        fieldRef:
          fieldPath: status.podIP
    {{- if $s.database.existingSecret }}
    - name: POOLWATCH_DATABASE_URL
      valueFrom:
        secretKeyRef:
          name: {{ $s.database.existingSecret }}
          key: {{ $s.database.secretKey }}
    {{- end }}
    {{- with $s.extraEnv }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  ports:
    - name: {{ $s.portName }}
      containerPort: {{ $s.port }}
      protocol: TCP
  {{- with $s.startupProbe }}
  startupProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $s.livenessProbe }}
  livenessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $s.readinessProbe }}
  readinessProbe:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $s.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $s.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
