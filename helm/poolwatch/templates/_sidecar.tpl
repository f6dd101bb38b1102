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

The native form needs Kubernetes 1.29 or later: rendering it for an older cluster fails.

Both render one list item. The sidecar serves /metrics on the pod IP (sidecar.port, scraped
by the PodMonitor this chart renders) and takes pushes on the pod's loopback only
(sidecar.pushAddress, default 127.0.0.1:19188): the application pushes to
http://127.0.0.1:19188/api/v1/pools/<app>/<pool>. POD_NAME (the default instance label of
pushes) and POD_IP (attribution of the pod's own backends) come from the downward API.
helm/examples/sidecar-app/ is a complete example.

With webConfig.existingSecret (TLS or basic auth) or sidecar.extraVolumes, the container mounts
volumes, and the pod needs them: include "poolwatch.sidecar.volumes" in the pod spec's volumes
too. It renders nothing while there are none, so it can be included always:

    spec:
      {{- with include "poolwatch.sidecar.volumes" .Subcharts.poolwatch }}
      volumes:
        {{- . | nindent 8 }}
      {{- end }}

or, in a pod that has volumes of its own, as the last item of its list:

      volumes:
        - name: data
          ...
        {{- include "poolwatch.sidecar.volumes" .Subcharts.poolwatch | nindent 8 }}
*/}}

{{- define "poolwatch.sidecar.container" -}}
{{- include "poolwatch.sidecar.spec" (dict "ctx" . "native" false) }}
{{- end }}

{{- define "poolwatch.sidecar.initContainer" -}}
{{- if semverCompare "<1.29.0-0" .Capabilities.KubeVersion.Version }}
{{- fail (printf "poolwatch.sidecar.initContainer is a native sidecar (an init container with restartPolicy: Always), which Kubernetes runs from 1.29 on; this cluster is %s: include poolwatch.sidecar.container in the pod's containers instead" .Capabilities.KubeVersion.Version) }}
{{- end }}
{{- include "poolwatch.sidecar.spec" (dict "ctx" . "native" true) }}
{{- end }}

{{/*
The pod's volumes that the sidecar container mounts: the web configuration's Secret, and
sidecar.extraVolumes; none when neither is set. The pod's fsGroup is the application's, so the
web configuration's files are readable by every user (0444); only the poolwatch container
mounts them.
*/}}
{{- define "poolwatch.sidecar.volumes" -}}
{{- include "poolwatch.webConfig.check" . }}
{{- include "poolwatch.sidecar.volumeItems" . | trim }}
{{- end }}

{{- define "poolwatch.sidecar.volumeItems" -}}
{{- with .Values.webConfig.existingSecret }}
- name: {{ include "poolwatch.sidecar.webConfigVolume" $ }}
  secret:
    secretName: {{ . }}
    defaultMode: 0444
{{- end }}
{{- with .Values.sidecar.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "poolwatch.sidecar.webConfigVolume" -}}
{{- printf "%s-web-config" .Values.sidecar.name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "poolwatch.sidecar.spec" -}}
{{- $ctx := .ctx }}
{{- include "poolwatch.webConfig.check" $ctx }}
{{- $s := $ctx.Values.sidecar -}}
- name: {{ $s.name }}
  image: {{ include "poolwatch.image" $ctx }}
  imagePullPolicy: {{ $ctx.Values.image.pullPolicy }}
  {{- if .native }}
  restartPolicy: Always
  {{- end }}
  args:
    - --mode=sidecar
    - --push-listen={{ $s.pushAddress }}
    - --log-level={{ $s.logLevel }}
    - --log-format={{ $s.logFormat }}
    {{- with $s.extraArgs }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  env:
    {{- include "poolwatch.clientEnv" (dict "ctx" $ctx "port" $s.port) | nindent 4 }}
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
    {{- with $s.forward }}
    {{- if .url }}
    - name: POOLWATCH_FORWARD_URL
      value: {{ .url | quote }}
    {{- if .existingSecret }}
    - name: POOLWATCH_FORWARD_TOKEN
      valueFrom:
        secretKeyRef:
          name: {{ .existingSecret }}
          key: {{ .tokenKey }}
    {{- end }}
    {{- if .caFile }}
    - name: POOLWATCH_FORWARD_CA_FILE
      value: {{ .caFile | quote }}
    {{- end }}
    {{- else if or .existingSecret .caFile }}
    {{- fail "sidecar.forward.existingSecret and sidecar.forward.caFile need sidecar.forward.url" }}
    {{- end }}
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
    {{- include "poolwatch.probe" (dict "probe" . "ctx" $ctx "port" $s.portName) | nindent 4 }}
  {{- end }}
  {{- with $s.livenessProbe }}
  livenessProbe:
    {{- include "poolwatch.probe" (dict "probe" . "ctx" $ctx "port" $s.portName) | nindent 4 }}
  {{- end }}
  {{- with $s.readinessProbe }}
  readinessProbe:
    {{- include "poolwatch.probe" (dict "probe" . "ctx" $ctx "port" $s.portName) | nindent 4 }}
  {{- end }}
  {{- with $s.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $s.securityContext }}
  securityContext:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- if or $ctx.Values.webConfig.existingSecret $s.extraVolumeMounts }}
  volumeMounts:
    {{- if $ctx.Values.webConfig.existingSecret }}
    - name: {{ include "poolwatch.sidecar.webConfigVolume" $ctx }}
      mountPath: {{ include "poolwatch.webConfigDir" $ctx }}
      readOnly: true
    {{- end }}
    {{- with $s.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- end }}
{{- end }}
