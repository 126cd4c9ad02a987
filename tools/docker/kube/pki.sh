#!/bin/sh
# docker-compose.yml `kube` profile, the `kube-pki` one-shot: everything the API server and its clients need, made
# once into the kube-pki volume (/pki) with openssl (the service image has it: ca-certificates depends on it).
#   ca.crt             the CA of the API server's serving certificate (0644: every client reads it)
#   apiserver.crt/key  serving certificate for kube-apiserver (the compose name), localhost and 127.0.0.1
#   sa.key/sa.pub      the ServiceAccount token signing key pair
#   tokens.csv         one static token, user admin in system:masters (0600, root: the API server reads it)
#   kubeconfig         that token and https://kube-apiserver:6443, for the reconciler (0600, owned by uid 65532)
# Runs as root; the private keys and the token file stay readable by root only.
set -eu
cd /pki
if [ -f .complete ]; then echo "kube-pki: already made"; exit 0; fi
umask 077
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
openssl req -x509 $ec -keyout ca.key -out ca.crt -days 365 -subj /CN=sandboxd-compose-ca 2>/dev/null
openssl req $ec -keyout apiserver.key -out apiserver.csr -subj /CN=kube-apiserver 2>/dev/null
printf 'subjectAltName=DNS:kube-apiserver,DNS:localhost,DNS:kubernetes.default.svc,IP:127.0.0.1\n' > san.ext
openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 365 -extfile san.ext \
  -out apiserver.crt 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out sa.key
openssl ec -in sa.key -pubout -out sa.pub 2>/dev/null
token="$(openssl rand -hex 32)"
printf '%s,admin,admin-uid,"system:masters"\n' "$token" > tokens.csv
cat > kubeconfig <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
  - name: compose
    cluster: {server: "https://kube-apiserver:6443", certificate-authority: /pki/ca.crt}
users:
  - name: admin
    user: {token: "$token"}
contexts:
  - name: compose
    context: {cluster: compose, user: admin}
current-context: compose
KUBECONFIG
chown 65532:65532 kubeconfig
chmod 0644 ca.crt
rm -f apiserver.csr san.ext ca.srl
touch .complete
echo "kube-pki: made"
