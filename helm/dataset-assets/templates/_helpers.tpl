{{/* Chart name, overridable with nameOverride. */}}
{{- define "dataset-assets.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name of the Deployment and Service; the release name alone when it already
holds the chart name. */}}
{{- define "dataset-assets.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := include "dataset-assets.name" . }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "dataset-assets.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dataset-assets.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: code-server
{{- end }}

{{- define "dataset-assets.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "dataset-assets.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "dataset-assets.image" -}}
{{- printf "%s:%s" (required "image.repository is required" .Values.image.repository) (.Values.image.tag | default .Chart.AppVersion | toString) }}
{{- end }}

{{/* The project's environment as a list of EnvVar: plain settings, then settings from Secrets.
Values of secretEnv never pass through the chart: only Secret names and keys do. */}}
{{- define "dataset-assets.env" -}}
{{- $kinds := list "k8s" "multiprocess" "in_process" }}
{{- if not (has .Values.executor.kind $kinds) }}
{{- fail (printf "executor.kind=%v: expected one of %s" .Values.executor.kind (join ", " $kinds)) }}
{{- end }}
{{- $limit := int .Values.executor.maxConcurrent }}
{{- if lt $limit 1 }}
{{- fail (printf "executor.maxConcurrent=%v: expected a whole number, at least 1" .Values.executor.maxConcurrent) }}
{{- end -}}
- name: DATASET_ASSETS_HOME
  value: {{ .Values.datasetAssetsHome | quote }}
- name: DATASET_ASSETS_EXECUTOR
  value: {{ .Values.executor.kind | quote }}
- name: DATASET_ASSETS_MAX_CONCURRENT
  value: {{ $limit | quote }}
{{- range $name, $value := .Values.env }}
{{- if hasKey ($.Values.secretEnv | default dict) $name }}
{{- fail (printf "env.%s is also in secretEnv: set it only through secretEnv, from a Secret" $name) }}
{{- end }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- range $name, $ref := .Values.secretEnv }}
{{- if $ref }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ required (printf "secretEnv.%s.secretName is required" $name) $ref.secretName }}
      key: {{ required (printf "secretEnv.%s.key is required" $name) $ref.key }}
      {{- if $ref.optional }}
      optional: true
      {{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/* Container context handed to `dagster api grpc` (includeConfigInLaunchedRuns): the run pods of
the K8sRunLauncher and the step pods of k8s_job_executor get the same image pull settings,
environment, service account and security contexts as the code server, writable emptyDirs at /tmp
and $DAGSTER_HOME/storage (the root filesystem is read-only), and launchedPodResources, which an
op's `dagster-k8s/config` tag overrides for its own step pod. */}}
{{- define "dataset-assets.containerContext" -}}
{{- $k8s := dict "env" (include "dataset-assets.env" . | fromYamlArray) "image_pull_policy" .Values.image.pullPolicy "namespace" .Release.Namespace }}
{{- $_ := set $k8s "volumes" (list (dict "name" "tmp" "emptyDir" dict) (dict "name" "dagster-storage" "emptyDir" dict)) }}
{{- $_ := set $k8s "volume_mounts" (list (dict "name" "tmp" "mountPath" "/tmp") (dict "name" "dagster-storage" "mountPath" (printf "%s/storage" .Values.dagsterHome))) }}
{{- with .Values.launchedPodResources }}
{{- $_ := set $k8s "resources" . }}
{{- end }}
{{- with .Values.securityContext }}
{{- $_ := set $k8s "security_context" . }}
{{- end }}
{{- with .Values.podSecurityContext }}
{{- $_ := set $k8s "run_k8s_config" (dict "pod_spec_config" (dict "security_context" .)) }}
{{- end }}
{{- with .Values.imagePullSecrets }}
{{- $_ := set $k8s "image_pull_secrets" . }}
{{- end }}
{{- with .Values.serviceAccountName }}
{{- $_ := set $k8s "service_account_name" . }}
{{- end }}
{{- dict "k8s" $k8s | toJson }}
{{- end }}
