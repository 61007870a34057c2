/*  ids.h - the ids every store gives its records.
 *
 *  An id is one prefix letter ("u" user, "p" product, "c" category) + 12
 *  hex digits of the creation time in unix ms + 8 hex digits (10 bits of
 *  the microsecond within that ms, then 22 random bits): unique, opaque to
 *  clients, and in creation order to the microsecond, so a database keyed
 *  by id is in creation order and a page cursor is the last id seen. Ids
 *  made in the same microsecond sort in random order; a collision needs
 *  the same microsecond and the same 22 random bits, and the stores refuse
 *  it (MDB_NOOVERWRITE, a primary key).
 */
#ifndef RETAIL_STORE_IDS_H
#define RETAIL_STORE_IDS_H

/* Characters of an id, without the terminator. */
#define STORE_ID_LEN 21

/* Makes a new id with the given prefix into out[STORE_ID_LEN + 1]. */
void store_new_id(char prefix, char *out);

#endif
