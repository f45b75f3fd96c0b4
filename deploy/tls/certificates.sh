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
# Keys are EC P-256: every client here (OpenSSL in Python and librdkafka, Java 17, libpq) speaks
# it, and a handshake costs less than with RSA. Files are written with umask 077: the caller
# loosens what must be read by another user (compose's containers, PostgreSQL's OS user).

TLS_CA_DAYS="${REFEX_TLS_CA_DAYS:-3650}"
# 825 days: the longest validity clients that follow the CA/Browser Forum rules still accept.
TLS_SERVER_DAYS="${REFEX_TLS_SERVER_DAYS:-825}"

tls_ca() {
  local dir="$1"
  [[ -s "$dir/ca.crt" && -s "$dir/ca.key" ]] && return 0
  ( umask 077; mkdir -p "$dir"
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$dir/ca.key" -out "$dir/ca.crt" -days "$TLS_CA_DAYS" \
        -subj "/O=Referral Exchange/CN=Referral Exchange private CA $(hostname -s 2>/dev/null || echo host)" \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null ) ||
    { echo "tls_ca: openssl could not make the certificate authority in $dir" >&2; return 1; }
  # The certificate is public (every client reads it); the key never leaves $dir.
  chmod 0644 "$dir/ca.crt"
}

# The subjectAltName a certificate carries, normalised to openssl's input syntax.
_tls_san_of() {
  openssl x509 -in "$1" -noout -ext subjectAltName 2>/dev/null | tail -n +2 |
    sed -e 's/^ *//' -e 's/IP Address:/IP:/g' -e 's/, /,/g'
}

tls_server() {
  local dir="$1" name="$2" san="$3"
  local crt="$dir/$name.crt" key="$dir/$name.key"
  if [[ -s "$crt" && -s "$key" && "$(_tls_san_of "$crt")" == "$san" ]] &&
     openssl x509 -in "$crt" -noout -checkend $((30 * 86400)) >/dev/null &&
     openssl verify -CAfile "$dir/ca.crt" "$crt" >/dev/null 2>&1; then
    return 0
  fi
  local cn="${san%%,*}"; cn="${cn#*:}"
  ( umask 077
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
        -keyout "$key.new" -subj "/O=Referral Exchange/CN=$cn" -out "$dir/$name.csr" 2>/dev/null &&
    openssl x509 -req -in "$dir/$name.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
        -CAcreateserial -CAserial "$dir/ca.srl" -days "$TLS_SERVER_DAYS" -sha256 \
        -extfile <(printf '%s\n' "subjectAltName=$san" "basicConstraints=critical,CA:FALSE" \
                     "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth") \
        -out "$crt.new" 2>/dev/null &&
    cat "$dir/ca.crt" >> "$crt.new" &&
    mv "$key.new" "$key" && mv "$crt.new" "$crt" && rm -f "$dir/$name.csr" ) ||
    { echo "tls_server: openssl could not make $name's certificate in $dir" >&2; return 1; }
  chmod 0644 "$crt"
}

tls_kafka_keystore() {
  local dir="$1" name="$2"
  ( umask 077; cat "$dir/$name.key" "$dir/$name.crt" > "$dir/$name.pem.new" &&
    mv "$dir/$name.pem.new" "$dir/$name.pem" )
}
