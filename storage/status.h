/*  status.h - the answers of every store, whatever its domain.
 *
 *  Each domain store (storage/catalog/, storage/users/) answers with these
 *  values; a domain that needs more extends them in its own enum from a
 *  value of 100 up (catalog_status_t), so that a store_status_t converts
 *  to it unchanged. Kept apart from any domain header so that no domain
 *  includes another's to get them.
 */
#ifndef RETAIL_STORE_STATUS_H
#define RETAIL_STORE_STATUS_H

typedef enum {
    STORE_OK = 0,
    STORE_NOT_FOUND,
    STORE_EXISTS,      /* create: the email is taken */
    STORE_UNAVAILABLE, /* the database cannot be reached now; try later */
    STORE_ERROR,       /* anything else; logged */
    STORE_CONFLICT,    /* patch: the stored hash is not the one expected */
    STORE_NO_SPACE,    /* a write found no room (disk or LMDB map full, storage/kv.h):
                          nothing of it is stored; it succeeds once space is freed */
} store_status_t;

#endif
