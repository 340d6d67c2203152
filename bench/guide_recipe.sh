#!/bin/sh
# The guide's "Making Keys" script (shared/seed/openwrt-strongswan-roadwarrior-guide.md),
# command for command, run non-interactively for the benchmark:
#   - the PKCS#12 passwords it asks for are given with -passout;
#   - the key type is an argument (the guide's `pki --gen` default is RSA-2048)
#     so that both sides make the same keys as owrt-vpn: RSA-3072 CA,
#     ECDSA P-256 or RSA-3072 devices;
#   - the site's names replace the guide's placeholders.
# Usage: guide_recipe.sh DIR ca|clients CLIENT_KEY_TYPE CLIENT_KEY_SIZE "NAME..."
set -e
cd "$1"
PHASE="$2"
CLIENT_TYPE="$3"
CLIENT_SIZE="$4"
CLIENTNAMES="$5"
COUNTRYNAME="US"
CANAME="benchca"
ORGNAME="bench"
SERVERDOMAINNAME="vpn.example.org"
SHAREDSAN="myVpnClients"
CAPASS="pass:bench-ca-password"
CLIENTPASS="pass:bench-client-password"

if [ "$PHASE" = ca ]; then
  ipsec pki --gen --type rsa --size 3072 --outform pem > caKey.pem
  ipsec pki --self --lifetime 3652 --in caKey.pem --dn "C=$COUNTRYNAME, O=$ORGNAME, CN=$CANAME" --ca --outform pem > caCert.pem
  openssl x509 -inform PEM -outform DER -in caCert.pem -out caCert.crt
  openssl pkcs12 -export -inkey caKey.pem -in caCert.pem -name "$CANAME" -certfile caCert.pem -caname "$CANAME" -out ca.p12 -passout "$CAPASS"
  ipsec pki --gen --type rsa --size 3072 --outform pem > serverKey_$SERVERDOMAINNAME.pem
  ipsec pki --pub --in serverKey_$SERVERDOMAINNAME.pem | ipsec pki --issue --lifetime 3652 --cacert caCert.pem --cakey caKey.pem --dn "C=$COUNTRYNAME, O=$ORGNAME, CN=$SERVERDOMAINNAME" --san="$SERVERDOMAINNAME" --flag serverAuth --flag ikeIntermediate --outform pem > serverCert_$SERVERDOMAINNAME.pem
  exit 0
fi

for CLIENTNAME in $CLIENTNAMES; do
  if [ -f "clientCert_$CLIENTNAME.pem" ] ; then
    continue
  fi
  ipsec pki --gen --type "$CLIENT_TYPE" --size "$CLIENT_SIZE" --outform pem > clientKey_$CLIENTNAME.pem
  ipsec pki --pub --in clientKey_$CLIENTNAME.pem | ipsec pki --issue --lifetime 3652 --cacert caCert.pem --cakey caKey.pem --dn "C=$COUNTRYNAME, O=$ORGNAME, CN=$CLIENTNAME" --san="$CLIENTNAME" --san="$SHAREDSAN" --outform pem > clientCert_$CLIENTNAME.pem
  openssl x509 -inform PEM -outform DER -in clientCert_$CLIENTNAME.pem -out clientCert_$CLIENTNAME.crt
  openssl pkcs12 -export -inkey clientKey_$CLIENTNAME.pem -in clientCert_$CLIENTNAME.pem -name "$CLIENTNAME" -certfile caCert.pem -caname "$CANAME" -out client_$CLIENTNAME.p12 -passout "$CLIENTPASS"
  rm clientKey_$CLIENTNAME.pem
  openssl x509 -inform PEM -outform DER -in clientCert_$CLIENTNAME.pem -out clientCert_$CLIENTNAME.crt
done
