{{/*
Names, labels and images shared by every template.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "fjord-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The prefix of every object name: fullnameOverride, else the release name, followed by the chart
name unless the release name contains it already. Truncated to 63 characters (a DNS label).
*/}}
{{- define "fjord-operator.fullname" -}}
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

{{/* chart: <name>-<version>, the helm.sh/chart label. */}}
{{- define "fjord-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The labels that select the operator's pods; they never change after install. */}}
{{- define "fjord-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "fjord-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The labels of every object of the release. */}}
{{- define "fjord-operator.labels" -}}
helm.sh/chart: {{ include "fjord-operator.chart" . }}
{{ include "fjord-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: operator
app.kubernetes.io/part-of: fjord
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The operator's ServiceAccount: created (its name defaults to the full name) or given. */}}
{{- define "fjord-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "fjord-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator's image; the tag defaults to the chart's appVersion. */}}
{{- define "fjord-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The default broker image (FJORD_BROKER_IMAGE); the tag defaults to the chart's appVersion. */}}
{{- define "fjord-operator.brokerImage" -}}
{{- printf "%s:%s" .Values.brokerImage.repository (default .Chart.AppVersion .Values.brokerImage.tag) }}
{{- end }}

{{/*
The operator's permissions on the resources it manages, one rule per API group and verb set;
bound cluster-wide (a ClusterRole) or per watched namespace (a Role each). The Lease rule of
leader election is a Role of its own in the release namespace (rbac.yaml).
*/}}
{{- define "fjord-operator.rules" -}}
- apiGroups: ["fjord.dev"]
  resources: ["clusters"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["fjord.dev"]
  resources: ["topics"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["fjord.dev"]
  resources: ["users"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["fjord.dev"]
  resources: ["clusters/status", "topics/status", "users/status"]
  verbs: ["patch"]
- apiGroups: ["fjord.dev"]
  resources: ["clusters/finalizers", "users/finalizers"]
  verbs: ["update"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "create", "update"]
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["list", "watch", "create", "patch", "delete"]
- apiGroups: [""]
  resources: ["services", "configmaps", "serviceaccounts"]
  verbs: ["list", "watch", "create", "patch"]
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["list", "watch", "create", "patch"]
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["list", "watch", "delete"]
- apiGroups: [""]
  resources: ["pods/proxy"]
  verbs: ["get", "create", "delete"]
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["delete"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
