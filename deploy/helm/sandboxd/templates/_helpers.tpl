{{/*
Names, labels, the value guards and the environment blocks both Deployments share.
Guards run from templates/validate.yaml, so a bad value fails `helm template` / `helm install` with one message.
*/}}

{{- define "sandboxd.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sandboxd.fullname" -}}
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

{{/* "<fullname>-<component>", still a valid 63-character name. Call with (list $ "reconciler"). */}}
{{- define "sandboxd.componentName" -}}
{{- $root := index . 0 }}
{{- printf "%s-%s" (include "sandboxd.fullname" $root | trunc 50 | trimSuffix "-") (index . 1) }}
{{- end }}

{{/* "<fullname>-<component>-namespaced": the ClusterRole bound in each sandbox namespace only. (list $ "reconciler") */}}
{{- define "sandboxd.namespacedRoleName" -}}
{{- printf "%s-namespaced" (include "sandboxd.componentName" .) }}
{{- end }}

{{/*
SANDBOXD_KUBE_NAMESPACE_GRANTS: the RoleBindings the reconciler writes in each sandbox namespace, one per
"<ClusterRole>=<ServiceAccount namespace>/<name>" (templates/clusterrole-*.yaml). Only with the chart's RBAC and
the Kubernetes applier; the scaler's only when it runs. (A kubeconfig for another cluster: rbac.create=false there,
and that cluster's identity holds its own access.)
*/}}
{{- define "sandboxd.namespaceGrants" -}}
{{- $grants := list (printf "%s=%s/%s" (include "sandboxd.namespacedRoleName" (list . "reconciler")) .Release.Namespace (include "sandboxd.serviceAccountName" (list . "reconciler"))) }}
{{- range $component := include "sandboxd.apiComponents" . | splitList "," | compact }}
{{- $grants = append $grants (printf "%s=%s/%s" (include "sandboxd.componentName" (list $ $component)) $.Release.Namespace (include "sandboxd.serviceAccountName" (list $ $component))) }}
{{- end }}
{{- join "," $grants }}
{{- end }}

{{/*
The processes besides the reconciler that call the Kubernetes API with a ServiceAccount of their own, comma-separated
("scaler,tokens"): the reconciler grants each its ClusterRole per sandbox namespace (Kubernetes applier).
*/}}
{{- define "sandboxd.apiComponents" -}}
{{- $components := list }}
{{- if .Values.scaler.enabled }}
{{- $components = append $components "scaler" }}
{{- end }}
{{- if include "sandboxd.tokenWriterDeployed" . }}
{{- $components = append $components "tokens" }}
{{- end }}
{{- join "," $components }}
{{- end }}

{{/*
"true" when `sandboxd tokens` runs as a Deployment of its own: minting is on (tokens.existingSecret) and the writer
is external. Empty otherwise (the writer runs inside the reconciler, or there is none).
*/}}
{{- define "sandboxd.tokenWriterDeployed" -}}
{{- if and .Values.tokens.existingSecret (eq .Values.tokens.writer "external") }}true{{ end }}
{{- end }}

{{- define "sandboxd.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "sandboxd.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sandboxd
{{- end }}

{{- define "sandboxd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sandboxd.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sandboxd.serviceAccountName" -}}
{{- $root := index . 0 }}
{{- $component := index . 1 }}
{{- $sa := (index $root.Values $component).serviceAccount }}
{{- if $sa.create }}
{{- default (include "sandboxd.componentName" (list $root $component)) $sa.name }}
{{- else }}
{{- default "default" $sa.name }}
{{- end }}
{{- end }}

{{/* The service image: repository@digest, or repository:tag. */}}
{{- define "sandboxd.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (toString .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
A number as the service parses it. Helm reads YAML numbers as float64 and would print 2592000 as 2.592e+06;
whole numbers are printed as integers, fractions as they are.
*/}}
{{- define "sandboxd.num" -}}
{{- if and (kindIs "float64" .) (eq . (floor .)) }}
{{- int64 . }}
{{- else }}
{{- . }}
{{- end }}
{{- end }}

{{/* ---------------------------------------------------------------------------------------------------------
Guards. `required` for the values every installation must choose; `fail` for an image that is not pinned.
Mirrors sandboxd.settings.fields.pinned_image, so the chart refuses what the service would refuse at start-up.
*/}}

{{- define "sandboxd.pinnedImage" -}}
{{- $ref := .value | toString | trim }}
{{- if contains "@" $ref }}
{{- if not (regexMatch "@sha256:[0-9a-f]{64}$" $ref) }}
{{- fail (printf "%s %q has a malformed digest; expected @sha256:<64 hex digits>" .name $ref) }}
{{- end }}
{{- else }}
{{- $last := last (splitList "/" $ref) }}
{{- if not (contains ":" $last) }}
{{- fail (printf "%s %q has no tag; pin it by digest (@sha256:...) or an explicit version tag (never latest)" .name $ref) }}
{{- end }}
{{- $tag := last (splitList ":" $last) }}
{{- if eq $tag "" }}
{{- fail (printf "%s %q has an empty tag; pin it by digest (@sha256:...) or an explicit version tag" .name $ref) }}
{{- end }}
{{- if eq (lower $tag) "latest" }}
{{- fail (printf "%s %q uses :latest; pin it by digest (@sha256:...) or an explicit version tag" .name $ref) }}
{{- end }}
{{- end }}
{{- end }}

{{- define "sandboxd.validate" -}}
{{- $r := .Values.runtime }}
{{- $_ := required "runtime.ptyServerImage is required: the pty-server image every sandbox runs (SANDBOX_PTY_SERVER_IMAGE), pinned by digest or an explicit version tag, e.g. --set runtime.ptyServerImage=ghcr.io/openova-io/openova/sandbox-pty-server:<sha>" $r.ptyServerImage }}
{{- $_ = required "runtime.mcpImage is required: the MCP companion image (SANDBOX_MCP_IMAGE), pinned by digest or an explicit version tag, e.g. --set runtime.mcpImage=ghcr.io/openova-io/openova/sandbox-mcp-server:<sha>" $r.mcpImage }}
{{- $_ = required "runtime.newapiURL is required: the LLM gateway URL given to every sandbox (SANDBOX_NEWAPI_URL), e.g. --set runtime.newapiURL=https://newapi.<sovereign-fqdn>/v1" $r.newapiURL }}
{{- $_ = required "runtime.sovereignFQDN is required: the Sovereign's DNS name; sandboxes answer on sandbox.<fqdn> (SANDBOX_SOVEREIGN_FQDN)" $r.sovereignFQDN }}
{{- /* `helm lint` without values lets `required` pass with an empty value: check the form of what is set. */}}
{{- if $r.ptyServerImage }}
{{- include "sandboxd.pinnedImage" (dict "name" "runtime.ptyServerImage" "value" $r.ptyServerImage) }}
{{- end }}
{{- if $r.mcpImage }}
{{- include "sandboxd.pinnedImage" (dict "name" "runtime.mcpImage" "value" $r.mcpImage) }}
{{- end }}
{{- if and $r.newapiURL (not (regexMatch "^https?://[^ ]{3,}$" (toString $r.newapiURL))) }}
{{- fail (printf "runtime.newapiURL %q is not an http(s) URL such as https://newapi.example.com/v1" (toString $r.newapiURL)) }}
{{- end }}
{{- if and $r.sovereignFQDN (not (regexMatch "^[a-z0-9-]+(\\.[a-z0-9-]+)+$" (lower (toString $r.sovereignFQDN)))) }}
{{- fail (printf "runtime.sovereignFQDN %q is not a DNS name such as omantel.omani.works" (toString $r.sovereignFQDN)) }}
{{- end }}
{{- if eq (toString $r.llmGatewayTokenSecret) "sandbox-tokens" }}
{{- fail "runtime.llmGatewayTokenSecret must differ from the placeholder Secret \"sandbox-tokens\"" }}
{{- end }}
{{- with .Values.image }}
{{- if .digest }}
{{- if not (regexMatch "^sha256:[0-9a-f]{64}$" (toString .digest)) }}
{{- fail (printf "image.digest %q is malformed; expected sha256:<64 hex digits>" (toString .digest)) }}
{{- end }}
{{- else }}
{{- $tag := toString .tag | trim }}
{{- if or (eq $tag "") (eq $tag "<nil>") }}
{{- fail "image.tag is empty; pin the sandboxd image by an explicit version tag (never latest) or set image.digest" }}
{{- end }}
{{- if eq (lower $tag) "latest" }}
{{- fail "image.tag is \"latest\"; pin the sandboxd image by an explicit version tag or set image.digest" }}
{{- end }}
{{- end }}
{{- end }}
{{- with .Values.nats }}
{{- if and (or .keys.user .keys.password .keys.token .keys.nkeySeed .keys.creds) (not .existingSecret) }}
{{- fail "nats.keys name keys of a Secret, but nats.existingSecret is empty; credentials only come from a Secret" }}
{{- end }}
{{- if ne (empty .keys.user) (empty .keys.password) }}
{{- fail "nats.keys.user and nats.keys.password must be set together (NATS_USER and NATS_PASSWORD)" }}
{{- end }}
{{- if ne (empty .tls.cert) (empty .tls.key) }}
{{- fail "nats.tls.cert and nats.tls.key must be set together (NATS_TLS_CERT and NATS_TLS_KEY)" }}
{{- end }}
{{- if and (or .tls.cert .tls.key) (not .tls.existingSecret) }}
{{- fail "nats.tls.cert/key name keys of a Secret, but nats.tls.existingSecret is empty" }}
{{- end }}
{{- with .scaler }}
{{- if and (or .keys.user .keys.password .keys.token .keys.nkeySeed .keys.creds) (not .existingSecret) }}
{{- fail "nats.scaler.keys name keys of a Secret, but nats.scaler.existingSecret is empty; credentials only come from a Secret" }}
{{- end }}
{{- if ne (empty .keys.user) (empty .keys.password) }}
{{- fail "nats.scaler.keys.user and nats.scaler.keys.password must be set together (NATS_USER and NATS_PASSWORD)" }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.tokens.existingSecret (eq .Values.tokens.writer "service") (ne .Values.applier.kind "kubernetes") }}
{{- fail (printf "tokens.writer=service needs applier.kind=kubernetes (the reconciler writes the token Secrets); with applier.kind=%s set tokens.writer=external to run `sandboxd tokens` beside it" .Values.applier.kind) }}
{{- end }}
{{- if and (eq .Values.applier.kind "gitops") (not .Values.applier.gitops.repo) }}
{{- fail "applier.gitops.repo is required with applier.kind=gitops: the remote URL of the GitOps repository (SANDBOXD_GITOPS_REPO)" }}
{{- end }}
{{- end }}

{{/* ---------------------------------------------------------------------------------------------------------
Environment blocks. Values become strings exactly as the service parses them; secrets are secretKeyRefs or files.
*/}}

{{/*
The NATS user a process connects as (deploy/nats/accounts.conf has one per role), as YAML for fromYaml:
existingSecret, keys, inboxPrefix. The scaler's (the token writer's) own when nats.scaler.existingSecret
(nats.tokens.existingSecret) is set, else the reconciler's. (list $ "reconciler"|"scaler"|"tokens")
*/}}
{{- define "sandboxd.natsCredentials" -}}
{{- $n := (index . 0).Values.nats }}
{{- $role := index . 1 }}
{{- $group := ternary (get $n $role) dict (has $role (list "scaler" "tokens")) }}
{{- $c := ternary $group $n (not (empty (get $group "existingSecret"))) }}
{{- dict "existingSecret" $c.existingSecret "keys" $c.keys "inboxPrefix" $c.inboxPrefix | toYaml }}
{{- end }}

{{/* (dict "nats" .Values.nats "clientName" <name> "credentials" <sandboxd.natsCredentials | fromYaml>) */}}
{{- define "sandboxd.env.nats" -}}
{{- $n := .nats }}
{{- $c := .credentials }}
- name: NATS_URL
  value: {{ $n.url | quote }}
- name: NATS_CLIENT_NAME
  value: {{ .clientName | quote }}
- name: NATS_INBOX_PREFIX
  value: {{ $c.inboxPrefix | quote }}
{{- range $var, $key := dict "NATS_USER" $c.keys.user "NATS_PASSWORD" $c.keys.password "NATS_TOKEN" $c.keys.token "NATS_NKEY_SEED" $c.keys.nkeySeed }}
{{- if $key }}
- name: {{ $var }}
  valueFrom:
    secretKeyRef:
      name: {{ $c.existingSecret | quote }}
      key: {{ $key | quote }}
{{- end }}
{{- end }}
{{- if $c.keys.creds }}
- name: NATS_CREDS
  value: /etc/sandboxd/nats/nats.creds
{{- end }}
{{- if $n.tls.existingSecret }}
{{- if $n.tls.ca }}
- name: NATS_TLS_CA
  value: /etc/sandboxd/nats-tls/ca.crt
{{- end }}
{{- if $n.tls.cert }}
- name: NATS_TLS_CERT
  value: /etc/sandboxd/nats-tls/tls.crt
- name: NATS_TLS_KEY
  value: /etc/sandboxd/nats-tls/tls.key
{{- end }}
{{- end }}
{{- end }}

{{- define "sandboxd.env.topology" -}}
{{- $t := .topology }}
- name: SANDBOXD_STREAM_REPLICAS
  value: {{ include "sandboxd.num" $t.streamReplicas | quote }}
- name: SANDBOXD_EVENTS_MAX_AGE_SECONDS
  value: {{ include "sandboxd.num" $t.eventsMaxAgeSeconds | quote }}
- name: SANDBOXD_DLQ_MAX_AGE_SECONDS
  value: {{ include "sandboxd.num" $t.dlqMaxAgeSeconds | quote }}
- name: SANDBOXD_DUPLICATE_WINDOW_SECONDS
  value: {{ include "sandboxd.num" $t.duplicateWindowSeconds | quote }}
- name: SANDBOXD_ACK_WAIT_SECONDS
  value: {{ include "sandboxd.num" $t.ackWaitSeconds | quote }}
- name: SANDBOXD_MAX_DELIVER
  value: {{ include "sandboxd.num" $t.maxDeliver | quote }}
- name: SANDBOXD_MAX_ACK_PENDING
  value: {{ include "sandboxd.num" $t.maxAckPending | quote }}
- name: SANDBOXD_STATUS_RETENTION_SECONDS
  value: {{ include "sandboxd.num" $t.statusRetentionSeconds | quote }}
{{- end }}

{{/* The reconciler's /healthz, /readyz and /metrics. */}}
{{- define "sandboxd.env.health" -}}
- name: SANDBOXD_HEALTH_PORT
  value: {{ include "sandboxd.num" .Values.health.port | quote }}
- name: SANDBOXD_HEALTH_HOST
  value: {{ .Values.health.host | quote }}
{{- end }}

{{/* Log level and drain bound; both processes. Call with (dict "Values" .Values "component" $c). */}}
{{- define "sandboxd.env.process" -}}
- name: SANDBOXD_LOG_LEVEL
  value: {{ .Values.logLevel | quote }}
- name: SANDBOXD_SHUTDOWN_GRACE_SECONDS
  value: {{ include "sandboxd.num" .component.shutdownGraceSeconds | quote }}
{{- end }}

{{- define "sandboxd.env.worker" -}}
{{- $w := .Values.reconciler }}
- name: SANDBOXD_CONCURRENCY
  value: {{ include "sandboxd.num" $w.concurrency | quote }}
- name: SANDBOXD_RESYNC_SECONDS
  value: {{ include "sandboxd.num" $w.resyncSeconds | quote }}
- name: SANDBOXD_CATCH_UP_HOLD_SECONDS
  value: {{ include "sandboxd.num" $w.catchUpHoldSeconds | quote }}
{{ include "sandboxd.env.retry" $w }}
{{- end }}

{{/* Retry backoff of failed work; both processes. Call with the component's values. */}}
{{- define "sandboxd.env.retry" -}}
- name: SANDBOXD_RETRY_BASE_SECONDS
  value: {{ include "sandboxd.num" .retryBaseSeconds | quote }}
- name: SANDBOXD_RETRY_CAP_SECONDS
  value: {{ include "sandboxd.num" .retryCapSeconds | quote }}
{{- end }}

{{/* Which cluster: unset KUBECONFIG means the pod's ServiceAccount. Both processes. */}}
{{- define "sandboxd.env.kubeconfig" -}}
{{- $k := .Values.applier.kubeconfig }}
{{- if $k.existingSecret }}
- name: KUBECONFIG
  value: /etc/sandboxd/kubeconfig/kubeconfig
{{- end }}
{{- if $k.context }}
- name: SANDBOXD_KUBE_CONTEXT
  value: {{ $k.context | quote }}
{{- end }}
- name: SANDBOXD_KUBE_REQUEST_TIMEOUT_SECONDS
  value: {{ include "sandboxd.num" .Values.applier.kubeRequestTimeoutSeconds | quote }}
{{- end }}

{{- define "sandboxd.env.applier" -}}
{{- $a := .Values.applier }}
- name: SANDBOXD_APPLIER
  value: {{ $a.kind | quote }}
- name: SANDBOXD_FIELD_MANAGER
  value: {{ $a.fieldManager | quote }}
- name: SANDBOXD_APPLY_CONCURRENCY
  value: {{ include "sandboxd.num" $a.applyConcurrency | quote }}
{{- if and .Values.rbac.create (eq $a.kind "kubernetes") }}
- name: SANDBOXD_KUBE_NAMESPACE_GRANTS
  value: {{ include "sandboxd.namespaceGrants" . | quote }}
{{- end }}
{{- include "sandboxd.env.kubeconfig" . }}
- name: SANDBOXD_DIRECTORY
  value: {{ $a.directory | quote }}
{{- if $a.gitops.repo }}
- name: SANDBOXD_GITOPS_REPO
  value: {{ $a.gitops.repo | quote }}
{{- end }}
- name: SANDBOXD_GITOPS_BRANCH
  value: {{ $a.gitops.branch | quote }}
- name: SANDBOXD_GITOPS_AUTHOR
  value: {{ $a.gitops.author | quote }}
{{- if $a.gitops.existingSecret }}
- name: SANDBOXD_GITOPS_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $a.gitops.existingSecret | quote }}
      key: {{ $a.gitops.usernameKey | quote }}
- name: SANDBOXD_GITOPS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $a.gitops.existingSecret | quote }}
      key: {{ $a.gitops.passwordKey | quote }}
{{- end }}
{{- end }}

{{/*
The token writer's settings. The admin bearer goes only to the process that mints: the reconciler with writer
service, `sandboxd tokens` with writer external. (dict "Values" .Values "minter" <bool>)
*/}}
{{- define "sandboxd.env.tokens" -}}
{{- $t := .Values.tokens }}
{{- if and $t.existingSecret .minter }}
- name: NEWAPI_ADMIN_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $t.existingSecret | quote }}
      key: {{ $t.adminSecretKey | quote }}
{{- end }}
- name: NEWAPI_BASE_URL
  value: {{ $t.baseURL | quote }}
- name: NEWAPI_DEFAULT_CHANNELS
  value: {{ $t.channels | quote }}
- name: SANDBOXD_TOKEN_WRITER
  value: {{ $t.writer | quote }}
- name: SANDBOXD_TOKEN_ROTATION_LEAD_SECONDS
  value: {{ include "sandboxd.num" $t.rotationLeadSeconds | quote }}
- name: SANDBOXD_TOKEN_CHECK_SECONDS
  value: {{ include "sandboxd.num" $t.checkSeconds | quote }}
- name: SANDBOXD_TOKEN_RETRY_BASE_SECONDS
  value: {{ include "sandboxd.num" $t.retryBaseSeconds | quote }}
- name: SANDBOXD_TOKEN_RETRY_CAP_SECONDS
  value: {{ include "sandboxd.num" $t.retryCapSeconds | quote }}
- name: NEWAPI_TIMEOUT_SECONDS
  value: {{ include "sandboxd.num" $t.timeoutSeconds | quote }}
- name: SANDBOXD_TOKEN_REVOKE
  value: {{ toString $t.revoke | quote }}
{{- end }}

{{- define "sandboxd.env.tenantBridge" -}}
{{- $b := .Values.tenantBridge }}
- name: SANDBOXD_TENANT_BRIDGE
  value: {{ toString $b.enabled | quote }}
- name: SANDBOXD_TENANT_STREAM
  value: {{ $b.stream | quote }}
- name: SANDBOXD_TENANT_SUBJECT
  value: {{ $b.subject | quote }}
- name: SANDBOXD_TENANT_CONSUMER
  value: {{ $b.consumer | quote }}
{{- end }}

{{- define "sandboxd.env.idle" -}}
{{- $i := .Values.idle }}
- name: SANDBOXD_IDLE_SWEEPER
  value: {{ toString $i.sweeper | quote }}
- name: SANDBOXD_IDLE_SWEEP_SECONDS
  value: {{ include "sandboxd.num" $i.sweepSeconds | quote }}
- name: SANDBOXD_IDLE_ACTIVITY_RESOLUTION_SECONDS
  value: {{ include "sandboxd.num" $i.activityResolutionSeconds | quote }}
- name: SANDBOXD_IDLE_STATUS_WRITES_PER_SWEEP
  value: {{ include "sandboxd.num" $i.statusWritesPerSweep | quote }}
- name: SANDBOXD_IDLE_PROBE
  value: {{ toString $i.probe | quote }}
- name: SANDBOXD_IDLE_PROBE_URL
  value: {{ $i.probeURL | quote }}
- name: SANDBOXD_IDLE_PROBE_TIMEOUT_SECONDS
  value: {{ include "sandboxd.num" $i.probeTimeoutSeconds | quote }}
- name: SANDBOXD_IDLE_PROBE_CONCURRENCY
  value: {{ include "sandboxd.num" $i.probeConcurrency | quote }}
{{- end }}

{{- define "sandboxd.env.scaler" -}}
{{- $s := .Values.scaler }}
- name: SANDBOXD_SCALER_FIELD_MANAGER
  value: {{ $s.fieldManager | quote }}
- name: SANDBOXD_SCALER_CONCURRENCY
  value: {{ include "sandboxd.num" $s.concurrency | quote }}
- name: SANDBOXD_SCALER_FETCH_BATCH
  value: {{ include "sandboxd.num" $s.fetchBatch | quote }}
- name: SANDBOXD_SCALER_FETCH_SECONDS
  value: {{ include "sandboxd.num" $s.fetchSeconds | quote }}
- name: SANDBOXD_SCALER_METRICS_PORT
  value: {{ include "sandboxd.num" $s.metricsPort | quote }}
- name: SANDBOXD_SCALER_METRICS_HOST
  value: {{ $s.metricsHost | quote }}
{{- include "sandboxd.env.kubeconfig" . }}
{{- end }}

{{/* The kubeconfig Secret volume and mount, when applier.kubeconfig.existingSecret is set. */}}
{{- define "sandboxd.kubeconfigVolume" -}}
{{- with .Values.applier.kubeconfig }}
{{- if .existingSecret }}
- name: kubeconfig
  secret:
    secretName: {{ .existingSecret | quote }}
    defaultMode: 0440
    items:
      - key: {{ .key | quote }}
        path: kubeconfig
{{- end }}
{{- end }}
{{- end }}

{{- define "sandboxd.kubeconfigVolumeMount" -}}
{{- if .Values.applier.kubeconfig.existingSecret }}
- name: kubeconfig
  mountPath: /etc/sandboxd/kubeconfig
  readOnly: true
{{- end }}
{{- end }}

{{- define "sandboxd.env.runtime" -}}
{{- $r := .Values.runtime }}
{{- $m := .Values.mcp }}
{{- $hs := .Values.cnpg.activeHotStandby }}
{{- $vars := list
  (list "SANDBOX_PTY_SERVER_IMAGE" $r.ptyServerImage)
  (list "SANDBOX_MCP_IMAGE" $r.mcpImage)
  (list "SANDBOX_NEWAPI_URL" $r.newapiURL)
  (list "SANDBOX_SOVEREIGN_FQDN" $r.sovereignFQDN)
  (list "SANDBOX_LLM_GATEWAY_TOKEN_SECRET" $r.llmGatewayTokenSecret)
  (list "SANDBOX_LLM_GATEWAY_TOKEN_KEY" $r.llmGatewayTokenKey)
  (list "SANDBOX_BYOS_SECRET_PREFIX" $r.byosSecretPrefix)
  (list "SANDBOX_IDLE_TIMEOUT_MINUTES" (include "sandboxd.num" $r.idleTimeoutMinutes))
  (list "SANDBOX_RING_BUFFER_BYTES" (include "sandboxd.num" $r.ringBufferBytes))
  (list "SANDBOX_MCP_TRANSPORT" $r.mcpTransport)
  (list "SANDBOX_MCP_PORT" (include "sandboxd.num" $r.mcpPort))
  (list "SANDBOX_GATEWAY_NAME" $r.gateway.name)
  (list "SANDBOX_GATEWAY_NAMESPACE" $r.gateway.namespace)
  (list "SANDBOX_GATEWAY_SECTION" $r.gateway.section)
  (list "SANDBOX_NETWORK_POLICY" (toString $r.networkPolicy.enabled))
  (list "SANDBOX_EGRESS_DNS_NAMESPACE" $r.networkPolicy.dnsNamespace)
  (list "SANDBOX_EGRESS_LLM_GATEWAY_NAMESPACE" $r.networkPolicy.llmGatewayNamespace)
  (list "SANDBOX_EGRESS_GIT_NAMESPACE" $r.networkPolicy.gitNamespace)
  (list "SANDBOX_EGRESS_CIDRS" (join "," $r.networkPolicy.egressCIDRs))
  (list "SANDBOX_PVC_SIZE" $r.pvcSize)
  (list "SANDBOX_STORAGE_CLASS" $r.storageClass)
  (list "SANDBOX_JWT_SECRET_NAME" $r.jwtSecretName)
  (list "SANDBOX_JWT_SECRET_KEY" $r.jwtSecretKey)
  (list "SANDBOX_MCP_GITEA_BASE_URL" $m.giteaBaseURL)
  (list "SANDBOX_MCP_GITEA_TOKEN_SECRET_NAME" $m.giteaTokenSecretName)
  (list "SANDBOX_MCP_GITEA_TOKEN_SECRET_KEY" $m.giteaTokenSecretKey)
  (list "SANDBOX_MCP_DOMAIN_API_URL" $m.domainAPIURL)
  (list "SANDBOX_MCP_MARKETPLACE_API_URL" $m.marketplaceAPIURL)
  (list "SANDBOX_MCP_STORAGE_S3_ENDPOINT" $m.storage.s3Endpoint)
  (list "SANDBOX_MCP_STORAGE_S3_REGION" $m.storage.s3Region)
  (list "SANDBOX_MCP_STORAGE_S3_USE_TLS" (toString $m.storage.s3UseTLS))
  (list "SANDBOX_MCP_STORAGE_S3_CREDS_SECRET_NAME" $m.storage.s3CredsSecretName)
  (list "SANDBOX_MCP_STORAGE_S3_ACCESS_KEY_KEY" $m.storage.s3AccessKeyKey)
  (list "SANDBOX_MCP_STORAGE_S3_SECRET_KEY_KEY" $m.storage.s3SecretKeyKey)
  (list "SANDBOX_MCP_KEYCLOAK_ADMIN_URL" $m.keycloak.adminURL)
  (list "SANDBOX_MCP_KEYCLOAK_PARENT_REALM" $m.keycloak.parentRealm)
  (list "SANDBOX_MCP_KEYCLOAK_ADMIN_TOKEN_SECRET_NAME" $m.keycloak.adminTokenSecretName)
  (list "SANDBOX_MCP_KEYCLOAK_ADMIN_TOKEN_SECRET_KEY" $m.keycloak.adminTokenSecretKey)
  (list "SOVEREIGN_ENABLE_HOT_STANDBY" (ternary "true" "" (eq (toString $hs.enabled) "true")))
  (list "SOVEREIGN_PRIMARY_REGION" $hs.primaryRegion)
  (list "SOVEREIGN_REPLICA_REGION" $hs.replicaRegion)
}}
{{- /* Unset optional settings stay unset, so the service applies its own default. */}}
{{- range $vars }}
{{- $value := index . 1 }}
{{- if and (not (kindIs "invalid" $value)) (ne (toString $value) "") }}
- name: {{ index . 0 }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* Volumes for the Secret files NATS needs (creds, TLS); empty when none. (list $ "reconciler"|"scaler") */}}
{{- define "sandboxd.natsVolumes" -}}
{{- $n := (index . 0).Values.nats }}
{{- $c := include "sandboxd.natsCredentials" . | fromYaml }}
{{- if $c.keys.creds }}
- name: nats-creds
  secret:
    secretName: {{ $c.existingSecret | quote }}
    defaultMode: 0440
    items:
      - key: {{ $c.keys.creds | quote }}
        path: nats.creds
{{- end }}
{{- if $n.tls.existingSecret }}
- name: nats-tls
  secret:
    secretName: {{ $n.tls.existingSecret | quote }}
    defaultMode: 0440
    items:
      {{- if $n.tls.ca }}
      - key: {{ $n.tls.ca | quote }}
        path: ca.crt
      {{- end }}
      {{- if $n.tls.cert }}
      - key: {{ $n.tls.cert | quote }}
        path: tls.crt
      - key: {{ $n.tls.key | quote }}
        path: tls.key
      {{- end }}
{{- end }}
{{- end }}

{{- define "sandboxd.natsVolumeMounts" -}}
{{- $n := (index . 0).Values.nats }}
{{- $c := include "sandboxd.natsCredentials" . | fromYaml }}
{{- if $c.keys.creds }}
- name: nats-creds
  mountPath: /etc/sandboxd/nats
  readOnly: true
{{- end }}
{{- if $n.tls.existingSecret }}
- name: nats-tls
  mountPath: /etc/sandboxd/nats-tls
  readOnly: true
{{- end }}
{{- end }}

{{/*
Probes on the named container port (the argument: a dict of "port", "health" for the reconciler or "metrics"
for the scaler and the token writer, and "probes", the chart's .Values.probes): /healthz (the process is alive),
/readyz (connected and consuming). Every timing is a value (values.yaml, "probes", says why each default).
*/}}
{{- define "sandboxd.probes" -}}
{{- $live := .probes.liveness -}}
{{- $ready := .probes.readiness -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: {{ .port }}
  initialDelaySeconds: {{ $live.initialDelaySeconds }}
  periodSeconds: {{ $live.periodSeconds }}
  timeoutSeconds: {{ $live.timeoutSeconds }}
  failureThreshold: {{ $live.failureThreshold }}
readinessProbe:
  httpGet:
    path: /readyz
    port: {{ .port }}
  initialDelaySeconds: {{ $ready.initialDelaySeconds }}
  periodSeconds: {{ $ready.periodSeconds }}
  timeoutSeconds: {{ $ready.timeoutSeconds }}
  failureThreshold: {{ $ready.failureThreshold }}
{{- end }}
