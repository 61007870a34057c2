/*  catalog_words.c - the word normaliser of the catalog (catalog_words,
 *  catalog_lower): the same function splits product text when it is
 *  indexed and query text when it is searched, so both sides agree.
 *
 *  Text is read as UTF-8. A word is a run of word characters:
 *    - ASCII letters and digits (letters lower-cased);
 *    - any other valid UTF-8 character, kept as it is, except those that
 *      are punctuation, symbols or spaces in the ranges we know: U+0080 -
 *      U+00BF other than the letters ª µ º, U+00D7 (×), U+00F7 (÷),
 *      U+2000 - U+206F (general punctuation), U+2E00 - U+2E7F, U+3000 -
 *      U+303F (CJK punctuation), U+FE00 - U+FE0F (variation selectors),
 *      U+FEFF (byte order mark);
 *    - Latin-1 supplement capitals (U+00C0 - U+00DE but U+00D7) become
 *      their small letters (+0x20), so "Éclair" and "éclair" are one word.
 *      Other scripts are not case-folded: that needs Unicode tables, and
 *      a shop's text in them is matched as it is typed.
 *  Anything else (ASCII punctuation and spaces, control characters, bytes
 *  that are not valid UTF-8) separates words. A word longer than
 *  CATALOG_WORD_MAX bytes is cut there, on a character boundary, and the
 *  rest of it is dropped (a query word is cut the same way, so it still
 *  matches). Words of one character are kept: sizes ("s", "m") and
 *  model letters are searched for.
 */
#include "storage/catalog/catalog_store_impl.h"

#include <string.h>

/* Decodes the UTF-8 character at s into *cp; its length in bytes, 0 at
 * the terminator, and 1 with *cp = UINT32_MAX for an invalid byte. */
static size_t s_utf8_next(const unsigned char *s, uint32_t *cp)
{
    unsigned char c = s[0];
    if (c == 0)
        return 0;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    size_t n;
    uint32_t v, min;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        v = c & 0x1f;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        v = c & 0x0f;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        v = c & 0x07;
        min = 0x10000;
    } else {
        *cp = UINT32_MAX;
        return 1;
    }
    for (size_t i = 1; i < n; i++) {
        /* The terminator is not a continuation byte, so this never reads
         * past it. */
        if ((s[i] & 0xc0) != 0x80) {
            *cp = UINT32_MAX;
            return 1;
        }
        v = v << 6 | (s[i] & 0x3f);
    }
    /* Overlong forms, surrogates and values past U+10FFFF are invalid. */
    if (v < min || (v >= 0xd800 && v <= 0xdfff) || v > 0x10ffff) {
        *cp = UINT32_MAX;
        return 1;
    }
    *cp = v;
    return n;
}

static bool s_is_word_char(uint32_t cp)
{
    if (cp < 0x80)
        return (cp >= '0' && cp <= '9') || (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z');
    if (cp == UINT32_MAX)
        return false;
    if (cp <= 0xbf)
        return cp == 0xaa || cp == 0xb5 || cp == 0xba;
    if (cp == 0xd7 || cp == 0xf7)
        return false;
    if ((cp >= 0x2000 && cp <= 0x206f) || (cp >= 0x2e00 && cp <= 0x2e7f) ||
        (cp >= 0x3000 && cp <= 0x303f) || (cp >= 0xfe00 && cp <= 0xfe0f) || cp == 0xfeff)
        return false;
    return true;
}

/* Writes the lower-cased form of the character cp, which took n bytes at
 * src, into out (at most 4 bytes); its length. */
static size_t s_lower_char(uint32_t cp, const unsigned char *src, size_t n, char *out)
{
    if (cp >= 'A' && cp <= 'Z') {
        out[0] = (char)(cp + 0x20);
        return 1;
    }
    if (cp >= 0xc0 && cp <= 0xde && cp != 0xd7) {
        /* U+00C0..U+00DE are C3 80..C3 9E; +0x20 stays within C3 xx. */
        out[0] = (char)0xc3;
        out[1] = (char)(0x80 | ((cp + 0x20) & 0x3f));
        return 2;
    }
    memcpy(out, src, n);
    return n;
}

void catalog_words(const char *text, void (*fn)(const char *word, size_t len, void *arg), void *arg)
{
    if (!text || !fn)
        return;
    char word[CATALOG_WORD_MAX];
    size_t len = 0;
    bool cut = false;
    const unsigned char *s = (const unsigned char *)text;
    for (;;) {
        uint32_t cp = 0;
        size_t n = s_utf8_next(s, &cp);
        if (n == 0 || !s_is_word_char(cp)) {
            if (len > 0)
                fn(word, len, arg);
            len = 0;
            cut = false;
            if (n == 0)
                break;
            s += n;
            continue;
        }
        char lower[4];
        size_t lower_len = s_lower_char(cp, s, n, lower);
        if (!cut && len + lower_len <= sizeof word) {
            memcpy(word + len, lower, lower_len);
            len += lower_len;
        } else
            cut = true; /* drop the rest of the word, not start another */
        s += n;
    }
}

size_t catalog_lower(const char *text, char *out, size_t cap)
{
    size_t len = 0;
    const unsigned char *s = (const unsigned char *)text;
    for (;;) {
        uint32_t cp = 0;
        size_t n = s_utf8_next(s, &cp);
        if (n == 0)
            break;
        char lower[4];
        size_t lower_len = cp == UINT32_MAX ? 1 : s_lower_char(cp, s, n, lower);
        if (cp == UINT32_MAX)
            lower[0] = (char)s[0];
        if (len + lower_len > cap)
            break;
        memcpy(out + len, lower, lower_len);
        len += lower_len;
        s += n;
    }
    return len;
}
