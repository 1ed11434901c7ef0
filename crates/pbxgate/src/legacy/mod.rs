//! The old API listener (`[https_api_old]`, port 8443): `GET /cdrapi`,
//! `/recapi`, `/pmsapi` with HTTP Digest/Basic authentication. Not built yet.
