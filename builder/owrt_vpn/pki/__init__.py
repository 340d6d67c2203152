"""The PKI: CA, server and client certificates, CRL, PKCS#12, the index."""
