{{/* Chart name, overridable. */}}
{{- define "regcred.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's resources: <release>-<chart>, or <release> if it already contains the chart name. */}}
{{- define "regcred.fullname" -}}
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

{{- define "regcred.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "regcred.selectorLabels" -}}
app.kubernetes.io/name: {{ include "regcred.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "regcred.labels" -}}
helm.sh/chart: {{ include "regcred.chart" . }}
{{ include "regcred.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: operator
{{- end }}

{{- define "regcred.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "regcred.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Where source credentials live: credentialsNamespace, else the release namespace. */}}
{{- define "regcred.credentialsNamespace" -}}
{{- default .Release.Namespace .Values.credentialsNamespace }}
{{- end }}

{{/* Admission webhook: the Service in front of every replica's HTTPS port. */}}
{{- define "regcred.webhookServiceName" -}}
{{- printf "%s-webhook" (include "regcred.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The Secret holding the webhook's serving certificate (tls.crt, tls.key). */}}
{{- define "regcred.webhookCertSecretName" -}}
{{- default (printf "%s-webhook-tls" (include "regcred.fullname" .)) .Values.admission.certSecretName }}
{{- end }}

{{/* The names the API server calls the webhook Service by, comma-separated. */}}
{{- define "regcred.webhookDNSNames" -}}
{{- $svc := include "regcred.webhookServiceName" . }}
{{- printf "%s.%s.svc,%s.%s.svc.cluster.local" $svc .Release.Namespace $svc .Release.Namespace }}
{{- end }}

{{/* "true" when regcred itself makes and rotates the webhook's CA and certificate (no cert-manager). */}}
{{- define "regcred.webhookSelfManagedCerts" -}}
{{- if and .Values.admission.enabled (not .Values.admission.certManager.enabled) }}true{{ end }}
{{- end }}
