# A private certificate authority and the server certificates it signs, with openssl: shared by
# the local infrastructure (deploy/local/tls.sh) and the compose set-up
# (deploy/compose/generate-env.sh). Source it; do not run it.
#
#   tls_ca DIR                    DIR/ca.crt and DIR/ca.key, made once (an existing CA is kept:
#                                 every client trusts it already)
#   tls_server DIR NAME SAN       DIR/NAME.crt (the server's certificate, then the CA's) and
#                                 DIR/NAME.key (unencrypted PKCS#8), signed by DIR/ca; made again
#                                 when missing, when SAN changed, or when it ends within 30 days
#     SAN: openssl's subjectAltName syntax, e.g. DNS:localhost,IP:127.0.0.1
#   tls_kafka_keystore DIR NAME   DIR/NAME.pem: key and chain in one file, the PEM keystore the
#                                 broker reads (ssl.keystore.type=PEM)
#
# Rotating the CA without downtime (docs/operations.md "Rotating the certificates", decision 35):
# clients trust DIR/ca.crt, which may hold two CAs while one replaces the other. Three steps, each
# followed by a rolling restart of the brokers, PostgreSQL's reload and the clients' restart:
#   tls_rotate_ca_begin DIR       a new CA (DIR/ca-next.crt, .key); ca.crt trusts the old and the
#                                 new; the servers keep their certificates of the old one
#   tls_rotate_ca_switch DIR      from now tls_server signs with the new CA (the servers'
#                                 certificates are reissued by the next tls_server)
#   tls_rotate_ca_finish DIR      the new CA becomes DIR/ca.crt and ca.key, trusted alone
# DIR/rotation says where a rotation stands ("overlap" or "switched"); none outside a rotation.
# DIR/ca-old.crt keeps the old CA's certificate during it.
#
# Keys are EC P-256: every client here (OpenSSL in Python and librdkafka, Java 17, libpq) speaks
# it, and a handshake costs less than with RSA. Files are written with umask 077: the caller
# loosens what must be read by another user (compose's containers, PostgreSQL's OS user).

TLS_CA_DAYS="${REFEX_TLS_CA_DAYS:-3650}"
# 825 days: the longest validity clients that follow the CA/Browser Forum rules still accept.
TLS_SERVER_DAYS="${REFEX_TLS_SERVER_DAYS:-825}"

# _tls_new_ca PREFIX SUFFIX: PREFIX.crt and PREFIX.key, a CA of its own. SUFFIX tells a later CA
# from the first by name: two CAs of one subject would be told apart by their keys only.
_tls_new_ca() {
  local prefix="$1" suffix="${2:-}"
  ( umask 077; mkdir -p "$(dirname "$prefix")"
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$prefix.key.new" -out "$prefix.crt.new" -days "$TLS_CA_DAYS" \
        -subj "/O=Referral Exchange/CN=Referral Exchange private CA $(hostname -s 2>/dev/null || echo host)$suffix" \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null &&
    mv "$prefix.key.new" "$prefix.key" && mv "$prefix.crt.new" "$prefix.crt" ) ||
    { echo "tls_ca: openssl could not make a certificate authority at $prefix" >&2; return 1; }
  # The certificate is public (every client reads it); the key never leaves its folder.
  chmod 0644 "$prefix.crt"
}

tls_ca() {
  local dir="$1"
  [[ -s "$dir/ca.crt" && -s "$dir/ca.key" ]] && return 0
  _tls_new_ca "$dir/ca"
}

# The CA that signs server certificates now: the old one until a rotation's switch, then the new.
_tls_signer() {
  local dir="$1"
  case "$(cat "$dir/rotation" 2>/dev/null)" in
    overlap) echo "$dir/ca-old" ;;
    switched) echo "$dir/ca-next" ;;
    *) echo "$dir/ca" ;;
  esac
}
_tls_signer_key() { case "$(_tls_signer "$1")" in "$1/ca-next") echo "$1/ca-next.key" ;; *) echo "$1/ca.key" ;; esac; }

# The subjectAltName a certificate carries, normalised to openssl's input syntax.
_tls_san_of() {
  openssl x509 -in "$1" -noout -ext subjectAltName 2>/dev/null | tail -n +2 |
    sed -e 's/^ *//' -e 's/IP Address:/IP:/g' -e 's/, /,/g'
}

# tls_server DIR NAME SAN [renew]: "renew" issues a new key and certificate even when the one
# there is current (tls.sh renew: a suspected key, or a rehearsal of the rotation).
tls_server() {
  local dir="$1" name="$2" san="$3" renew="${4:-}"
  local crt="$dir/$name.crt" key="$dir/$name.key" signer signer_key
  signer="$(_tls_signer "$dir").crt"; signer_key="$(_tls_signer_key "$dir")"
  # Verified against the signing CA alone: after a rotation's switch, a certificate of the old
  # CA is reissued even though ca.crt still trusts it.
  if [[ "$renew" != renew && -s "$crt" && -s "$key" && "$(_tls_san_of "$crt")" == "$san" ]] &&
     openssl x509 -in "$crt" -noout -checkend $((30 * 86400)) >/dev/null &&
     openssl verify -CAfile "$signer" "$crt" >/dev/null 2>&1; then
    return 0
  fi
  local cn="${san%%,*}"; cn="${cn#*:}"
  ( umask 077
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$key.new" -subj "/O=Referral Exchange/CN=$cn" -out "$dir/$name.csr" 2>/dev/null &&
    openssl x509 -req -in "$dir/$name.csr" -CA "$signer" -CAkey "$signer_key" \
        -CAcreateserial -CAserial "$dir/ca.srl" -days "$TLS_SERVER_DAYS" -sha256 \
        -extfile <(printf '%s\n' "subjectAltName=$san" "basicConstraints=critical,CA:FALSE" \
                     "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth") \
        -out "$crt.new" 2>/dev/null &&
    cat "$signer" >> "$crt.new" &&
    mv "$key.new" "$key" && mv "$crt.new" "$crt" && rm -f "$dir/$name.csr" ) ||
    { echo "tls_server: openssl could not make $name's certificate in $dir" >&2; return 1; }
  chmod 0644 "$crt"
}

tls_kafka_keystore() {
  local dir="$1" name="$2"
  ( umask 077; cat "$dir/$name.key" "$dir/$name.crt" > "$dir/$name.pem.new" &&
    mv "$dir/$name.pem.new" "$dir/$name.pem" )
}

_tls_rotation_state() { cat "$1/rotation" 2>/dev/null || echo none; }

tls_rotate_ca_begin() {
  local dir="$1" state
  state="$(_tls_rotation_state "$dir")"
  [[ "$state" == none ]] || { echo "a CA rotation is under way in $dir ($state): finish it first" >&2; return 1; }
  [[ -s "$dir/ca.crt" && -s "$dir/ca.key" ]] || { echo "no CA in $dir to rotate" >&2; return 1; }
  (( $(grep -c 'BEGIN CERTIFICATE' "$dir/ca.crt") == 1 )) ||
    { echo "$dir/ca.crt holds more than one certificate outside a rotation" >&2; return 1; }
  _tls_new_ca "$dir/ca-next" " $(date -u +%Y-%m-%dT%H%M%SZ)" || return 1
  ( umask 077
    cp "$dir/ca.crt" "$dir/ca-old.crt" &&
    cat "$dir/ca-old.crt" "$dir/ca-next.crt" > "$dir/ca.crt.new" &&
    chmod 0644 "$dir/ca-old.crt" "$dir/ca.crt.new" &&
    mv "$dir/ca.crt.new" "$dir/ca.crt" &&
    echo overlap > "$dir/rotation" ) ||
    { echo "tls_rotate_ca_begin: could not write the trust of both CAs in $dir" >&2; return 1; }
}

tls_rotate_ca_switch() {
  local dir="$1" state
  state="$(_tls_rotation_state "$dir")"
  [[ "$state" == overlap ]] || { echo "no CA rotation to switch in $dir ($state): begin one first" >&2; return 1; }
  echo switched > "$dir/rotation"
}

# tls_rotate_ca_finish DIR NAME...: NAME are the server certificates of DIR, each of which must
# be the new CA's by now (the old CA is trusted no more once this returns).
tls_rotate_ca_finish() {
  local dir="$1" state name; shift
  state="$(_tls_rotation_state "$dir")"
  [[ "$state" == switched ]] || { echo "the CA rotation in $dir is not switched yet ($state)" >&2; return 1; }
  for name in "$@"; do
    openssl verify -CAfile "$dir/ca-next.crt" "$dir/$name.crt" >/dev/null 2>&1 ||
      { echo "$dir/$name.crt is not the new CA's yet: run the switch's reissue first" >&2; return 1; }
  done
  ( umask 077
    mv "$dir/ca-next.key" "$dir/ca.key" && mv "$dir/ca-next.crt" "$dir/ca.crt" &&
    rm -f "$dir/ca-old.crt" "$dir/rotation" ) ||
    { echo "tls_rotate_ca_finish: could not make the new CA the only one in $dir" >&2; return 1; }
}

# What the folder's TLS stands at: the CAs trusted, where a rotation is, each server certificate's
# issuer and end.
tls_status() {
  local dir="$1" name
  echo "rotation: $(_tls_rotation_state "$dir")"
  echo "trusted (ca.crt):"
  openssl crl2pkcs7 -nocrl -certfile "$dir/ca.crt" | openssl pkcs7 -print_certs -noout |
    sed -n 's/^subject=.*CN *= *\(.*\)$/  \1/p'
  shift
  for name in "$@"; do
    [[ -s "$dir/$name.crt" ]] || continue
    echo "$name: issued by $(openssl x509 -in "$dir/$name.crt" -noout -issuer | sed 's/^.*CN *= *//'), ends $(openssl x509 -in "$dir/$name.crt" -noout -enddate | cut -d= -f2)"
  done
}
