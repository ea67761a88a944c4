#!/usr/bin/env bash
# Makes the sample MSP folders and TLS certificates that config/configtx.yaml
# names: CA and TLS CA certificates for an orderer organization and one
# application organization, NodeOUs config, and the TLS certificates of three
# etcdraft consenters. Only certificates are kept: a genesis block needs no
# private key. Run from anywhere; writes under config/crypto.
set -euo pipefail
cd "$(dirname "$0")/../config"
out=crypto
keys=$(mktemp -d)
trap 'rm -rf "$keys"' EXIT
days=36500

ca() { # name subject -> $keys/name.key, cert at $2
    local name=$1 cert=$2 subject=$3
    openssl ecparam -name prime256v1 -genkey -noout -out "$keys/$name.key"
    openssl req -x509 -new -key "$keys/$name.key" -sha256 -days $days -subj "$subject" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
        -out "$cert"
}

leaf() { # caname cacert cert subject san
    local caname=$1 cacert=$2 cert=$3 subject=$4 san=$5
    local key="$keys/$(basename "$cert").key"
    openssl ecparam -name prime256v1 -genkey -noout -out "$key"
    openssl req -new -key "$key" -subj "$subject" -out "$key.csr"
    printf 'subjectAltName=%s\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n' "$san" >"$key.ext"
    openssl x509 -req -in "$key.csr" -CA "$cacert" -CAkey "$keys/$caname.key" -CAcreateserial \
        -days $days -sha256 -extfile "$key.ext" -out "$cert" 2>/dev/null
}

nodeous() { # msp dir, CA file name
    cat >"$1/config.yaml" <<YAML
NodeOUs:
  Enable: true
  ClientOUIdentifier:
    Certificate: cacerts/$2
    OrganizationalUnitIdentifier: client
  PeerOUIdentifier:
    Certificate: cacerts/$2
    OrganizationalUnitIdentifier: peer
  AdminOUIdentifier:
    Certificate: cacerts/$2
    OrganizationalUnitIdentifier: admin
  OrdererOUIdentifier:
    Certificate: cacerts/$2
    OrganizationalUnitIdentifier: orderer
YAML
}

rm -rf "$out"
for org in ordererorg org1; do
    msp=$out/$org/msp
    mkdir -p "$msp/cacerts" "$msp/tlscacerts"
    ca "$org-ca" "$msp/cacerts/ca-cert.pem" "/O=$org/CN=ca.$org"
    ca "$org-tlsca" "$msp/tlscacerts/tlsca-cert.pem" "/O=$org/CN=tlsca.$org"
    nodeous "$msp" ca-cert.pem
done
mkdir -p "$out/ordererorg/tls"
for n in 1 2 3; do
    leaf ordererorg-tlsca "$out/ordererorg/msp/tlscacerts/tlsca-cert.pem" \
        "$out/ordererorg/tls/orderer$n.crt" "/O=ordererorg/CN=orderer$n" "IP:127.0.0.1,DNS:localhost"
done
rm -f "$out"/*/msp/*/*.srl
echo "sample crypto written to config/$out"
