/*  keys.h - CurveZMQ certificates on disk (API.md section 4).
 *
 *  Layout under the keys directory ($RETAIL_DATA_DIR/keys):
 *      broker.cert, broker.cert_secret   the broker's pair
 *      NAME.cert, NAME.cert_secret       a client's or worker pool's pair
 *      clients/NAME.cert                 the allow-list: public certs only
 *  Files are CZMQ's ZPL certificate format; every certificate carries a
 *  "name" metadata field, which ZAP hands to the broker as the caller's
 *  authenticated name. Secret files are written mode 0600.
 *
 *  Ownership: returned zcert_t are the caller's to zcert_destroy().
 */
#ifndef RETAIL_KEYS_H
#define RETAIL_KEYS_H

#include <czmq.h>

#define KEYS_Z85_LEN 40

/* Loads NAME's certificate pair from keys_dir, creating it (and keys_dir)
 * when absent. Returns NULL on an I/O error, an unreadable file, or a path
 * too long for CZMQ's certificate functions (about 220 bytes). */
zcert_t *keys_ensure(const char *keys_dir, const char *name);

/* Loads an existing pair; NULL if absent or unreadable. */
zcert_t *keys_load(const char *keys_dir, const char *name);

/* Writes cert's public part to keys_dir/clients/NAME.cert. 0 or -1. */
int keys_allow(const char *keys_dir, zcert_t *cert, const char *name);

/* Reads the broker's public key (Z85, NUL-terminated) from
 * keys_dir/broker.cert. 0 or -1. */
int keys_broker_public(const char *keys_dir, char out[KEYS_Z85_LEN + 1]);

/* Makes sock a CURVE client with cert, trusting server_public. */
void keys_apply_client(zsock_t *sock, zcert_t *cert, const char *server_public);

/* True for endpoints that leave the process (tcp://, ipc://...). */
bool keys_endpoint_needs_curve(const char *endpoint);

/* The longest caller name (a certificate's or an in-process peer's). */
#define KEYS_NAME_MAX 64

/* True for a name a certificate or an in-process peer may carry: 1 to
 * KEYS_NAME_MAX characters of A-Z a-z 0-9 _ . -, not starting with '.'. */
bool keys_name_valid(const char *name, size_t len);

/* True for names that grant a role: the broker's, the bridge's and every
 * service's. A certificate with such a name is trusted as that part of
 * the system (catalog moves stock only for "orders"), so tools make one
 * only when told that it is for that part (retailctl keygen --service). */
bool keys_name_reserved(const char *name);

/* Names an in-process socket before it connects to the broker over
 * inproc, where no handshake authenticates anyone: its routing id
 * becomes NAME "#" and 16 random hex digits, unique per socket, and the
 * broker reads the caller's name from it (only for peers without a
 * network address; see protocol/SPEC.md section 1). 0, or -1 for an
 * invalid name. */
int keys_name_inproc(zsock_t *sock, const char *name);

/* The caller name in an in-process peer's routing id (see above) into
 * out[KEYS_NAME_MAX + 1]; false when the id carries none. */
bool keys_inproc_caller(const void *routing_id, size_t len, char *out);

#endif
