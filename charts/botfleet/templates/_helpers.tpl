{{/* Names and labels. */}}
{{- define "botfleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "botfleet.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "botfleet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "botfleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "botfleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "botfleet.labels" -}}
helm.sh/chart: {{ include "botfleet.chart" . }}
{{ include "botfleet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: botfleet
{{- end -}}

{{- define "botfleet.operatorLabels" -}}
{{ include "botfleet.labels" . }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "botfleet.operatorSelectorLabels" -}}
{{ include "botfleet.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "botfleet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "botfleet.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* An image reference from {repository, tag, digest}; the tag defaults to appVersion. */}}
{{- define "botfleet.image" -}}
{{- $image := index . 0 -}}
{{- $root := index . 1 -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{/* MinIO. */}}
{{- define "botfleet.minio.fullname" -}}
{{- printf "%s-minio" (include "botfleet.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "botfleet.minio.secretName" -}}
{{- default (include "botfleet.minio.fullname" .) .Values.minio.existingSecret -}}
{{- end -}}

{{- define "botfleet.minio.selectorLabels" -}}
{{ include "botfleet.selectorLabels" . }}
app.kubernetes.io/component: minio
{{- end -}}

{{/* The object store as the operator sees it. */}}
{{- define "botfleet.s3.endpoint" -}}
{{- if .Values.minio.enabled -}}
{{- printf "http://%s.%s.svc:9000" (include "botfleet.minio.fullname" .) .Release.Namespace -}}
{{- else -}}
{{- .Values.objectStore.endpoint -}}
{{- end -}}
{{- end -}}

{{- define "botfleet.s3.secret" -}}
{{- if .Values.minio.enabled -}}
{{- include "botfleet.minio.secretName" . -}}
{{- else -}}
{{- .Values.objectStore.credentialsSecret -}}
{{- end -}}
{{- end -}}

{{- define "botfleet.s3.region" -}}
{{- if not .Values.minio.enabled -}}
{{- .Values.objectStore.region -}}
{{- end -}}
{{- end -}}

{{/*
The operator's rules inside a watched namespace (or cluster-wide): exactly the calls of
operator/botfleet_operator (kube.py, executors.py) and kopf's watches and events.
*/}}
{{- define "botfleet.rbac.namespacedRules" -}}
# BotRequests: kopf lists and watches them, and patches metadata only (its finalizer
# and bookkeeping annotations). No create, update or delete: Git owns the spec.
- apiGroups: ["botfleet.dev"]
  resources: ["botrequests"]
  verbs: ["get", "list", "watch", "patch"]
# Every operator write to a request is a merge patch of the status subresource.
- apiGroups: ["botfleet.dev"]
  resources: ["botrequests/status"]
  verbs: ["get", "patch"]
{{- if eq .Values.executor.type "kuberay" }}
# The RayJob it creates carries an ownerReference with blockOwnerDeletion, which
# clusters with OwnerReferencesPermissionEnforcement allow only with this.
- apiGroups: ["botfleet.dev"]
  resources: ["botrequests/finalizers"]
  verbs: ["update"]
# One RayJob per request generation: created, read back, deleted when superseded,
# patched to suspend and resume it (spec.suspend).
- apiGroups: ["ray.io"]
  resources: ["rayjobs"]
  verbs: ["get", "create", "delete", "patch"]
{{- end }}
# Events on BotRequests (the operator's and kopf's), for `kubectl describe`: create only.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
# Secret keys a request names, get by name only (no list, no watch): the ray executor
# reads them all (Ray's job API has no Secret references; the kuberay executor passes
# secretKeyRefs to the RayJob's pods), and both read the Hub token of spec.publish to
# retry a failed publish without a job.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
{{- end -}}

{{/* Serving (docs/serving.md). */}}
{{- define "botfleet.serving.fullname" -}}
{{- printf "%s-serving" (include "botfleet.fullname" .) | trunc 47 | trimSuffix "-" -}}
{{- end -}}

{{- define "botfleet.serving.catalog" -}}
{{- default (printf "s3://%s/.botfleet/serving-catalog.json" .Values.objectStore.bucket) .Values.serving.catalog -}}
{{- end -}}

{{/* The API's base URL shown in the status: the value, else the in-cluster address. */}}
{{- define "botfleet.serving.endpoint" -}}
{{- if .Values.serving.endpoint -}}
{{- .Values.serving.endpoint -}}
{{- else if eq .Values.executor.type "kuberay" -}}
{{- printf "http://%s-serve-svc.%s.svc:8000/v1" (include "botfleet.serving.fullname" .) .Release.Namespace -}}
{{- else -}}
{{- printf "%s:8000/v1" (regexReplaceAll ":[0-9]+/?$" .Values.executor.ray.address "") -}}
{{- end -}}
{{- end -}}

{{/*
The Serve application, as operator/botfleet_operator/serving.py:serve_application renders it
for the ray executor (tests/unit/test_chart.py checks that the two agree).
*/}}
{{- define "botfleet.serving.config" -}}
{{- $s := .Values.serving -}}
{{- $args := dict "catalog" (include "botfleet.serving.catalog" .) "models_per_replica" $s.modelsPerReplica "min_replicas" $s.replicas.min "max_replicas" $s.replicas.max "replica_cpus" $s.cpusPerReplica "replica_gpus" $s.gpusPerReplica -}}
{{- $app := dict "name" "botfleet" "route_prefix" "/" "import_path" "botfleet_serving.app:build_app" "args" $args -}}
{{- dict "applications" (list $app) | toYaml -}}
{{- end -}}

{{/* The environment of the serving Ray containers: the object store, credentials from the Secret. */}}
{{- define "botfleet.serving.env" -}}
- name: RAY_USAGE_STATS_ENABLED
  value: "0"
- name: AWS_EC2_METADATA_DISABLED
  value: "true"
- name: BOTFLEET_S3_ENDPOINT
  value: {{ include "botfleet.s3.endpoint" . | quote }}
- name: AWS_ENDPOINT_URL
  value: {{ include "botfleet.s3.endpoint" . | quote }}
{{- with include "botfleet.s3.region" . }}
- name: AWS_REGION
  value: {{ . | quote }}
- name: AWS_DEFAULT_REGION
  value: {{ . | quote }}
{{- end }}
{{- if .Values.objectStore.caSecret }}
- name: BOTFLEET_S3_CA_FILE
  value: /etc/botfleet/s3-ca/ca.crt
{{- end }}
{{- range list "AWS_ACCESS_KEY_ID" "AWS_SECRET_ACCESS_KEY" }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ include "botfleet.s3.secret" $ }}
      key: {{ . }}
{{- end }}
{{- end -}}

{{/* The fleet page (templates/page.yaml). */}}
{{- define "botfleet.pageLabels" -}}
{{ include "botfleet.labels" . }}
app.kubernetes.io/component: page
{{- end -}}

{{- define "botfleet.pageSelectorLabels" -}}
{{ include "botfleet.selectorLabels" . }}
app.kubernetes.io/component: page
{{- end -}}
