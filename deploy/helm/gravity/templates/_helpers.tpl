{{/* The chart's name, at most 63 characters (a DNS label). */}}
{{- define "gravity.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's objects are named after it; a release already named after the chart is not doubled. */}}
{{- define "gravity.fullname" -}}
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

{{/* The labels that select this release's pods: stable for the life of the release. */}}
{{- define "gravity.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gravity.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "gravity.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "gravity.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: {{ .Values.mode }}
{{- end }}

{{- define "gravity.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "gravity.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "gravity.inferencePoolName" -}}
{{- default (printf "%s-pool" (include "gravity.fullname" .)) .Values.epp.inferencePool.name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Several replicas, now or through the autoscaler. */}}
{{- define "gravity.multiReplica" -}}
{{- if or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{/*
Gravity's gravity.yaml: the user's `config` with the keys the chart must agree with set over it (the
ports its Service and probes use, the data folder it mounts, the stores whose URLs it injects, the EPP
section in epp mode).
*/}}
{{- define "gravity.config" -}}
{{- if and (include "gravity.multiReplica" .) (ne .Values.ledger.store "postgres") }}
{{- fail "several replicas (replicaCount > 1 or autoscaling) need ledger.store: postgres: each pod's SQLite ledger would hold only its own share of the usage" }}
{{- end }}
{{- $chart := dict "server" (dict "host" "0.0.0.0" "port" (int .Values.service.port)) "metrics" (dict "host" "0.0.0.0" "port" (int .Values.service.metricsPort)) "dataDir" "/var/lib/gravity" }}
{{- if eq .Values.ledger.store "postgres" }}
{{- $_ := set $chart "ledger" (dict "store" "postgres") }}
{{- end }}
{{- if eq .Values.state.store "redis" }}
{{- $_ := set $chart "state" (dict "store" "redis") }}
{{- end }}
{{- if eq .Values.mode "epp" }}
{{- if not .Values.epp.models }}
{{- fail "epp.models (the model names requests to the pool carry) is needed in epp mode" }}
{{- end }}
{{- $discovery := dict }}
{{- if eq .Values.epp.discovery "kubernetes" }}
{{- $_ := set $discovery "kubernetes" (dict "namespace" .Release.Namespace "inferencePool" (include "gravity.inferencePoolName" .)) }}
{{- else }}
{{- $_ := set $discovery "dns" (dict "name" (required "epp.dns.name is needed with epp.discovery: dns" .Values.epp.dns.name) "port" (int .Values.epp.dns.port) "intervalMs" (int .Values.epp.dns.intervalMs)) }}
{{- end }}
{{- $_ := set $chart "epp" (dict "host" "0.0.0.0" "port" (int .Values.service.extProcPort) "models" .Values.epp.models "discovery" $discovery) }}
{{- end }}
{{- toYaml (mustMergeOverwrite (deepCopy .Values.config) $chart) }}
{{- end }}
