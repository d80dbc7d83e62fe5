#include "gw_auth.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "gw_array.h"
#include "gw_buf.h"
#include "gw_fs.h"
#include "gw_registry.h"

#define DIGEST_LEN 32
#define TOKEN_RANDOM_BYTES 32
/* A tokens file has a few hundred entries at most; anything far larger is
 * a wrong path. */
#define TOKENS_MAX_BYTES (4 * 1024 * 1024)
/* Presented tokens longer than this are not ours: no need to hash them. */
#define TOKEN_MAX_PRESENTED 256
#define PERSON_MAX 128

struct token_entry {
    struct gw_actor actor; /* its strings point into the fields below */
    unsigned char digest[DIGEST_LEN];
    char *name;       /* as in the file */
    char *actor_name; /* "role:name", what the history records */
    char *scope;      /* as in the file; actor.scope_id points into it */
    char *person;
    int line; /* of the entry, for messages */
};

struct gw_auth {
    struct token_entry *entries;
    size_t n;
    /* Column of the first entry's keys in the file (-1: no block entry),
     * so that an appended entry lines up with the ones there. */
    int item_column;
};

/* ---- loading ---------------------------------------------------------- */

struct loader {
    const char *file;
    const struct gw_registry *reg;
    yaml_document_t *doc;
    struct gw_auth *auth;
    char *error;
};

static int fail(struct loader *ld, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct loader *ld, int line, const char *fmt, ...)
{
    va_list ap;

    if (ld->error)
        return -EINVAL;
    va_start(ap, fmt);
    ld->error = gw_vformat_at(ld->file, line, fmt, ap);
    va_end(ap);
    return ld->error ? -EINVAL : -ENOMEM;
}

static int node_line(const yaml_node_t *node)
{
    return (int)node->start_mark.line + 1;
}

static const char *scalar(const yaml_node_t *node)
{
    return (const char *)node->data.scalar.value;
}

static bool is_null(const yaml_node_t *node)
{
    return node->type == YAML_SCALAR_NODE && node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           (scalar(node)[0] == '\0' || strcmp(scalar(node), "~") == 0 ||
            strcmp(scalar(node), "null") == 0);
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int parse_digest(const char *hex, unsigned char digest[DIGEST_LEN])
{
    if (strlen(hex) != DIGEST_LEN * 2)
        return -EINVAL;
    for (size_t i = 0; i < DIGEST_LEN; i++) {
        int hi = hex_value(hex[2 * i]), lo = hex_value(hex[2 * i + 1]);

        if (hi < 0 || lo < 0)
            return -EINVAL;
        digest[i] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

static void format_digest(const unsigned char digest[DIGEST_LEN], char hex[DIGEST_LEN * 2 + 1])
{
    for (size_t i = 0; i < DIGEST_LEN; i++)
        snprintf(hex + 2 * i, 3, "%02x", digest[i]);
}

static int sha256(const char *text, size_t len, unsigned char digest[DIGEST_LEN])
{
    unsigned int n = 0;

    if (EVP_Digest(text, len, digest, &n, EVP_sha256(), NULL) != 1 || n != DIGEST_LEN)
        return -EIO;
    return 0;
}

static bool name_valid(const char *name)
{
    size_t n = strlen(name);

    if (n == 0 || n > GW_TOKEN_NAME_MAX)
        return false;
    return strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

static bool person_valid(const char *person)
{
    size_t n = strlen(person);

    if (n == 0 || n > PERSON_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)person[i] < 0x20 || person[i] == 0x7f)
            return false;
    return true;
}

/* Whether the registry has a street, community or grid for the scope. */
static bool scope_known(const struct gw_registry *reg, enum gw_scope_kind kind, const char *id)
{
    if (kind == GW_SCOPE_DISTRICT)
        return true;
    if (kind == GW_SCOPE_GRID)
        return gw_registry_grid(reg, id) != NULL;
    for (size_t i = 0; i < gw_registry_grid_count(reg); i++) {
        const struct gw_grid *g = gw_registry_grid_at(reg, i);
        const char *have = kind == GW_SCOPE_STREET ? g->street_id : g->community_id;

        if (have && strcmp(have, id) == 0)
            return true;
    }
    return false;
}

static void entry_free_contents(struct token_entry *e)
{
    free(e->name);
    free(e->actor_name);
    free(e->scope);
    free(e->person);
}

/* The keys of one entry, as found in the file. */
struct entry_nodes {
    yaml_node_t *name, *role, *scope, *sha256, *post, *person;
};

static int entry_collect(struct loader *ld, size_t index, yaml_node_t *item,
                         struct entry_nodes *ret)
{
    static const char *const keys[] = {"name", "role", "scope", "sha256", "post", "person"};
    yaml_node_t **slots[] = {&ret->name,   &ret->role, &ret->scope,
                             &ret->sha256, &ret->post, &ret->person};

    memset(ret, 0, sizeof(*ret));
    if (item->type != YAML_MAPPING_NODE)
        return fail(ld, node_line(item),
                    "tokens[%zu]: expected a mapping (name, role, scope, sha256)", index);
    for (yaml_node_pair_t *p = item->data.mapping.pairs.start; p < item->data.mapping.pairs.top;
         p++) {
        yaml_node_t *key = yaml_document_get_node(ld->doc, p->key);
        yaml_node_t *value = yaml_document_get_node(ld->doc, p->value);
        size_t k;

        if (key->type != YAML_SCALAR_NODE)
            return fail(ld, node_line(key), "tokens[%zu]: expected a key", index);
        for (k = 0; k < ARRAY_SIZE(keys); k++)
            if (strcmp(scalar(key), keys[k]) == 0)
                break;
        if (k == ARRAY_SIZE(keys))
            return fail(ld, node_line(key),
                        "tokens[%zu].%s: unknown key (expected name, role, scope, sha256, post, "
                        "person)",
                        index, scalar(key));
        if (*slots[k])
            return fail(ld, node_line(key), "tokens[%zu].%s: given twice", index, keys[k]);
        if (value->type != YAML_SCALAR_NODE || is_null(value) ||
            strlen(scalar(value)) != value->data.scalar.length)
            return fail(ld, node_line(value), "tokens[%zu].%s: expected a non-empty string", index,
                        keys[k]);
        *slots[k] = value;
    }
    if (!ret->name || !ret->role || !ret->scope || !ret->sha256)
        return fail(ld, node_line(item), "tokens[%zu].%s: missing", index,
                    !ret->name    ? "name"
                    : !ret->role  ? "role"
                    : !ret->scope ? "scope"
                                  : "sha256");
    return 0;
}

static int entry_check_staff(struct loader *ld, size_t index, const struct entry_nodes *nodes,
                             struct token_entry *e)
{
    if (e->actor.role != GW_ACTOR_STAFF) {
        yaml_node_t *extra = nodes->post ? nodes->post : nodes->person;

        if (extra)
            return fail(ld, node_line(extra),
                        "tokens[%zu].%s: only staff tokens have one (this is %s)", index,
                        nodes->post ? "post" : "person", gw_actor_role_name(e->actor.role));
        return 0;
    }
    if (!nodes->post)
        return fail(ld, e->line, "tokens[%zu].post: missing (staff need their grid role)", index);
    int post = gw_role_parse(scalar(nodes->post));
    if (post < 0)
        return fail(ld, node_line(nodes->post),
                    "tokens[%zu].post: unknown grid role \"%s\" (expected manager, assistant, "
                    "police, supervisor, judicial, firefighter or party_secretary)",
                    index, scalar(nodes->post));
    e->actor.has_grid_role = true;
    e->actor.grid_role = (enum gw_role)post;
    if (nodes->person) {
        if (!person_valid(scalar(nodes->person)))
            return fail(ld, node_line(nodes->person),
                        "tokens[%zu].person: expected a name of 1 to %d bytes without control "
                        "characters",
                        index, PERSON_MAX);
        e->person = strdup(scalar(nodes->person));
        if (!e->person)
            return -ENOMEM;
        e->actor.person = e->person;
    }
    return 0;
}

static int entry_load(struct loader *ld, size_t index, yaml_node_t *item, struct token_entry *e)
{
    struct entry_nodes nodes;
    enum gw_scope_kind kind;
    const char *scope_id;
    int r, role;

    e->line = node_line(item);
    r = entry_collect(ld, index, item, &nodes);
    if (r < 0)
        return r;
    if (!name_valid(scalar(nodes.name)))
        return fail(ld, node_line(nodes.name),
                    "tokens[%zu].name: \"%s\" is not 1 to %d characters of A-Z, a-z, 0-9, '.', "
                    "'_', '-'",
                    index, scalar(nodes.name), GW_TOKEN_NAME_MAX);
    role = gw_actor_role_parse(scalar(nodes.role));
    if (role < 0)
        return fail(ld, node_line(nodes.role),
                    "tokens[%zu].role: unknown role \"%s\" (expected operator, commander, staff, "
                    "supervisor, liaison or readonly)",
                    index, scalar(nodes.role));
    e->actor.role = (enum gw_actor_role)role;
    if (gw_scope_parse(scalar(nodes.scope), &kind, &scope_id) < 0)
        return fail(ld, node_line(nodes.scope),
                    "tokens[%zu].scope: \"%s\" is not district, street:ID, community:ID or grid:ID",
                    index, scalar(nodes.scope));
    if (ld->reg && !scope_known(ld->reg, kind, scope_id))
        return fail(ld, node_line(nodes.scope), "tokens[%zu].scope: \"%s\" is not in the district",
                    index, scalar(nodes.scope));
    if (parse_digest(scalar(nodes.sha256), e->digest) < 0)
        return fail(ld, node_line(nodes.sha256), "tokens[%zu].sha256: expected 64 hex digits",
                    index);
    e->name = strdup(scalar(nodes.name));
    e->scope = strdup(scalar(nodes.scope));
    if (!e->name || !e->scope ||
        asprintf(&e->actor_name, "%s:%s", scalar(nodes.role), e->name) < 0) {
        e->actor_name = NULL;
        return -ENOMEM;
    }
    e->actor.name = e->actor_name;
    e->actor.scope = kind;
    gw_scope_parse(e->scope, &kind, &e->actor.scope_id);
    return entry_check_staff(ld, index, &nodes, e);
}

/* Names identify a token in every history row it writes; two entries
 * with one hash would make one of them unreachable. */
static int entry_check_unique(struct loader *ld, size_t index)
{
    const struct token_entry *e = &ld->auth->entries[index];

    for (size_t i = 0; i < index; i++) {
        const struct token_entry *o = &ld->auth->entries[i];

        if (strcmp(o->name, e->name) == 0)
            return fail(ld, e->line, "tokens[%zu].name: \"%s\" is taken by tokens[%zu] (line %d)",
                        index, e->name, i, o->line);
        if (memcmp(o->digest, e->digest, DIGEST_LEN) == 0)
            return fail(ld, e->line, "tokens[%zu].sha256: the same as tokens[%zu] (line %d)", index,
                        i, o->line);
    }
    return 0;
}

static int load_tokens(struct loader *ld, yaml_node_t *list)
{
    size_t n;
    int r;

    if (is_null(list))
        return 0;
    if (list->type != YAML_SEQUENCE_NODE)
        return fail(ld, node_line(list), "tokens: expected a list of entries");
    n = (size_t)(list->data.sequence.items.top - list->data.sequence.items.start);
    if (n == 0)
        return 0;
    ld->auth->entries = calloc(n, sizeof(*ld->auth->entries));
    if (!ld->auth->entries)
        return -ENOMEM;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *item = yaml_document_get_node(ld->doc, list->data.sequence.items.start[i]);

        ld->auth->n = i + 1;
        if (i == 0 && list->data.sequence.style == YAML_BLOCK_SEQUENCE_STYLE &&
            item->type == YAML_MAPPING_NODE)
            ld->auth->item_column = (int)item->start_mark.column;
        r = entry_load(ld, i, item, &ld->auth->entries[i]);
        if (r == 0)
            r = entry_check_unique(ld, i);
        if (r < 0)
            return r;
    }
    return 0;
}

static int load_root(struct loader *ld, yaml_node_t *root)
{
    yaml_node_t *list = NULL;

    if (!root || root->type != YAML_MAPPING_NODE)
        return fail(ld, root ? node_line(root) : 0, "expected a mapping with the key tokens");
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        yaml_node_t *key = yaml_document_get_node(ld->doc, p->key);

        if (key->type != YAML_SCALAR_NODE || strcmp(scalar(key), "tokens") != 0)
            return fail(ld, node_line(key), "%s: unknown key (expected tokens)",
                        key->type == YAML_SCALAR_NODE ? scalar(key) : "?");
        if (list)
            return fail(ld, node_line(key), "tokens: given twice");
        list = yaml_document_get_node(ld->doc, p->value);
    }
    if (!list)
        return fail(ld, node_line(root), "tokens: missing");
    return load_tokens(ld, list);
}

static int syntax_error(struct loader *ld, const yaml_parser_t *parser)
{
    if (parser->error == YAML_MEMORY_ERROR)
        return -ENOMEM;
    return fail(ld, (int)parser->problem_mark.line + 1, "YAML syntax error: %s%s%s",
                parser->context ? parser->context : "", parser->context ? ", " : "",
                parser->problem ? parser->problem : "unknown problem");
}

static int parse_text(struct loader *ld, const char *text, size_t len)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    int r;

    if (!yaml_parser_initialize(&parser))
        return -ENOMEM;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        r = syntax_error(ld, &parser);
        yaml_parser_delete(&parser);
        return r;
    }
    ld->doc = &doc;
    r = load_root(ld, yaml_document_get_root_node(&doc));
    ld->doc = NULL;
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return r;
}

/* Parses text (the file's content, named file in messages). */
static struct gw_auth *auth_parse(const char *file, const char *text, size_t len,
                                  const struct gw_registry *reg, char **ret_error)
{
    struct loader ld = {.file = file, .reg = reg};
    int r;

    ld.auth = calloc(1, sizeof(*ld.auth));
    if (!ld.auth) {
        *ret_error = NULL;
        return NULL;
    }
    ld.auth->item_column = -1;
    r = parse_text(&ld, text, len);
    if (r < 0) {
        gw_auth_free(ld.auth);
        if (!ld.error && asprintf(&ld.error, "%s: %s", file, strerror(-r)) < 0)
            ld.error = NULL;
        *ret_error = ld.error;
        return NULL;
    }
    return ld.auth;
}

struct gw_auth *gw_auth_load(const char *path, const struct gw_registry *reg, char **ret_error)
{
    struct gw_buf text = GW_BUF_INIT;
    struct gw_auth *auth;
    int r;

    r = gw_buf_read_file(&text, path, TOKENS_MAX_BYTES);
    if (r < 0) {
        if (asprintf(ret_error, "%s: cannot read the tokens file: %s", path, strerror(-r)) < 0)
            *ret_error = NULL;
        return NULL;
    }
    auth = auth_parse(path, text.data, text.len, reg, ret_error);
    gw_buf_free(&text);
    return auth;
}

void gw_auth_free(struct gw_auth *auth)
{
    if (!auth)
        return;
    for (size_t i = 0; i < auth->n; i++)
        entry_free_contents(&auth->entries[i]);
    free(auth->entries);
    free(auth);
}

size_t gw_auth_count(const struct gw_auth *auth)
{
    return auth ? auth->n : 0;
}

const struct gw_actor *gw_auth_lookup(const struct gw_auth *auth, const char *token)
{
    unsigned char digest[DIGEST_LEN];
    uintptr_t found = 0;
    size_t len;

    if (!auth || !token)
        return NULL;
    len = strnlen(token, TOKEN_MAX_PRESENTED + 1);
    if (len == 0 || len > TOKEN_MAX_PRESENTED || sha256(token, len, digest) < 0)
        return NULL;
    /* Every entry is compared, and the match is selected with a mask
     * rather than a branch, so the time taken is the same wherever (and
     * whether) the token matched. */
    for (size_t i = 0; i < auth->n; i++) {
        uintptr_t equal =
            (uintptr_t)(CRYPTO_memcmp(digest, auth->entries[i].digest, DIGEST_LEN) == 0);
        uintptr_t mask = (uintptr_t)0 - equal;

        found = (found & ~mask) | ((uintptr_t)&auth->entries[i].actor & mask);
    }
    OPENSSL_cleanse(digest, sizeof(digest));
    return (const struct gw_actor *)found;
}

/* ---- new tokens ------------------------------------------------------- */

static int set_error(char **ret_error, int r, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int set_error(char **ret_error, int r, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    if (vasprintf(ret_error, fmt, ap) < 0)
        *ret_error = NULL;
    va_end(ap);
    return r;
}

static int spec_check(const char *path, const struct gw_token_spec *spec, char **ret_error)
{
    enum gw_scope_kind kind;
    const char *id;

    if (spec->name && !name_valid(spec->name))
        return set_error(
            ret_error, -EINVAL,
            "--name \"%s\": expected 1 to %d characters of A-Z, a-z, 0-9, '.', '_', '-'",
            spec->name, GW_TOKEN_NAME_MAX);
    if ((int)spec->role < 0 || spec->role >= GW_ACTOR_ROLE_COUNT)
        return set_error(ret_error, -EINVAL, "%s: unknown role", path);
    if (!spec->scope || gw_scope_parse(spec->scope, &kind, &id) < 0)
        return set_error(ret_error, -EINVAL,
                         "--scope \"%s\": expected district, street:ID, community:ID or grid:ID",
                         spec->scope ? spec->scope : "");
    if (spec->reg && !scope_known(spec->reg, kind, id))
        return set_error(ret_error, -EINVAL, "--scope \"%s\": not in the district", spec->scope);
    if (spec->role == GW_ACTOR_STAFF && !spec->has_post)
        return set_error(ret_error, -EINVAL, "--post: staff tokens need the grid role they hold");
    if (spec->role != GW_ACTOR_STAFF && (spec->has_post || spec->person))
        return set_error(ret_error, -EINVAL, "--%s: only staff tokens have one",
                         spec->has_post ? "post" : "person");
    if (spec->person && !person_valid(spec->person))
        return set_error(ret_error, -EINVAL,
                         "--person: expected a name of 1 to %d bytes without control characters",
                         PERSON_MAX);
    return 0;
}

/* "gg_" + base64url (no padding) of 32 random bytes. */
static int token_make(char token[GW_TOKEN_LEN + 1])
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    unsigned char bytes[TOKEN_RANDOM_BYTES + 2] = {0}; /* zero tail: whole 3-byte groups */
    size_t out = strlen(GW_TOKEN_PREFIX);

    if (RAND_bytes(bytes, TOKEN_RANDOM_BYTES) != 1)
        return -EIO;
    memcpy(token, GW_TOKEN_PREFIX, out);
    for (size_t i = 0; i < TOKEN_RANDOM_BYTES; i += 3) {
        unsigned long v =
            (unsigned long)bytes[i] << 16 | (unsigned long)bytes[i + 1] << 8 | bytes[i + 2];

        for (int k = 3; k >= 0; k--)
            if (out < GW_TOKEN_LEN)
                token[out++] = alphabet[(v >> (6 * k)) & 63];
    }
    token[out] = '\0';
    OPENSSL_cleanse(bytes, sizeof(bytes));
    return 0;
}

/* A YAML scalar: plain when it is made of characters that can never
 * mean anything else to YAML (names, scopes), double-quoted otherwise,
 * which is safe for any text the checks let through. */
static int put_scalar(struct gw_buf *b, const char *s)
{
    static const char plain[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:-";
    int r;

    if (s[0] != '-' && s[0] != ':' && strspn(s, plain) == strlen(s) && strcasecmp(s, "null") != 0)
        return gw_buf_puts(b, s);
    r = gw_buf_putc(b, '"');

    for (; r == 0 && *s; s++) {
        if (*s == '"' || *s == '\\')
            r = gw_buf_putc(b, '\\');
        if (r == 0)
            r = gw_buf_putc(b, *s);
    }
    return r == 0 ? gw_buf_putc(b, '"') : r;
}

struct entry_text {
    const char *name, *role, *scope, *post, *person, *sha256;
};

/* One list entry, its keys at column `column` (the dash two before). */
static int put_entry(struct gw_buf *b, const struct entry_text *e, int column)
{
    int dash = column >= 2 ? column - 2 : 0;
    int r;

    r = gw_buf_printf(b, "%*s- name: ", dash, "");
    r = r ? r : put_scalar(b, e->name);
    r = r ? r : gw_buf_printf(b, "\n%*srole: %s\n%*sscope: ", column, "", e->role, column, "");
    r = r ? r : put_scalar(b, e->scope);
    if (e->post)
        r = r ? r : gw_buf_printf(b, "\n%*spost: %s", column, "", e->post);
    if (e->person) {
        r = r ? r : gw_buf_printf(b, "\n%*sperson: ", column, "");
        r = r ? r : put_scalar(b, e->person);
    }
    return r ? r : gw_buf_printf(b, "\n%*ssha256: %s\n", column, "", e->sha256);
}

static const char file_header[] =
    "# gridgate API tokens (gridgate token new): the SHA-256 of each token, never the token.\n";

/* The whole file written afresh from old's entries plus the new one: for
 * files whose list cannot take an appended entry (a flow list, or keys
 * after the list). Comments are lost, entries are not. */
static int put_canonical(struct gw_buf *b, const struct gw_auth *old, const struct entry_text *e)
{
    int r = gw_buf_printf(b, "%stokens:\n", file_header);

    for (size_t i = 0; r == 0 && old && i < old->n; i++) {
        const struct token_entry *o = &old->entries[i];
        char hex[DIGEST_LEN * 2 + 1];
        struct entry_text t = {
            .name = o->name,
            .role = gw_actor_role_name(o->actor.role),
            .scope = o->scope,
            .post = o->actor.has_grid_role ? gw_role_name(o->actor.grid_role) : NULL,
            .person = o->person,
            .sha256 = hex,
        };

        format_digest(o->digest, hex);
        r = put_entry(b, &t, 4);
    }
    return r ? r : put_entry(b, e, 4);
}

/* Whether text loads and ends with the new entry after old's. */
static bool candidate_good(const char *path, const struct gw_buf *text, size_t old_n,
                           const char *name)
{
    char *error = NULL;
    struct gw_auth *auth = auth_parse(path, text->data, text->len, NULL, &error);
    bool good = auth && auth->n == old_n + 1 && strcmp(auth->entries[old_n].name, name) == 0;

    free(error);
    gw_auth_free(auth);
    return good;
}

static int build_content(const char *path, const struct gw_buf *old_text, const struct gw_auth *old,
                         const struct entry_text *e, struct gw_buf *ret)
{
    size_t old_n = gw_auth_count(old);
    int r;

    if (old_text->len > 0 && old_n > 0 && old->item_column >= 0) {
        r = gw_buf_append(ret, old_text->data, old_text->len);
        if (r == 0 && old_text->data[old_text->len - 1] != '\n')
            r = gw_buf_putc(ret, '\n');
        r = r ? r : put_entry(ret, e, old->item_column);
        if (r < 0)
            return r;
        if (candidate_good(path, ret, old_n, e->name))
            return 0;
        gw_buf_reset(ret);
    }
    r = put_canonical(ret, old, e);
    if (r < 0)
        return r;
    return candidate_good(path, ret, old_n, e->name) ? 0 : -EINVAL;
}

/* Writes content to a temporary file beside path and renames it over
 * path, so readers see the old file or the new one, never half of it. */
static int replace_file(const char *path, const struct gw_buf *content, mode_t mode)
{
    char *tmp = NULL, *dir_copy = NULL;
    int fd = -1, r = 0;

    r = gw_mkdir_parent(path); /* a fresh installation's var/ */
    if (r < 0)
        return r;
    if (asprintf(&tmp, "%s.XXXXXX", path) < 0)
        return -ENOMEM;
    fd = mkstemp(tmp); /* 0600 */
    if (fd < 0) {
        r = -errno;
        goto out;
    }
    if (fchmod(fd, mode) < 0 || write(fd, content->data, content->len) != (ssize_t)content->len ||
        fsync(fd) < 0) {
        r = errno ? -errno : -EIO;
        goto out;
    }
    if (close(fd) < 0) {
        fd = -1;
        r = -errno;
        goto out;
    }
    fd = -1;
    if (rename(tmp, path) < 0) {
        r = -errno;
        goto out;
    }
    /* The rename itself must reach the disk too. */
    dir_copy = strdup(path);
    if (dir_copy) {
        int dfd = open(dirname(dir_copy), O_RDONLY | O_DIRECTORY);

        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
out:
    if (fd >= 0)
        close(fd);
    if (r < 0)
        unlink(tmp);
    free(tmp);
    free(dir_copy);
    return r;
}

static int read_existing(const char *path, struct gw_buf *text, struct gw_auth **ret_old,
                         mode_t *ret_mode, char **ret_error)
{
    struct stat st;
    int r;

    *ret_old = NULL;
    *ret_mode = 0600;
    r = gw_buf_read_file(text, path, TOKENS_MAX_BYTES);
    if (r == -ENOENT)
        return 0;
    if (r < 0)
        return set_error(ret_error, r, "%s: cannot read: %s", path, strerror(-r));
    if (stat(path, &st) == 0)
        *ret_mode = st.st_mode & 07777;
    if (strspn(text->data, " \t\r\n") == text->len)
        return 0; /* an empty file is a new one */
    *ret_old = auth_parse(path, text->data, text->len, NULL, ret_error);
    return *ret_old ? 0 : -EINVAL;
}

static int name_free(const struct gw_auth *old, const char *name, const char *path,
                     char **ret_error)
{
    for (size_t i = 0; old && i < old->n; i++)
        if (strcmp(old->entries[i].name, name) == 0)
            return set_error(ret_error, -EEXIST, "%s:%d: a token named \"%s\" exists already", path,
                             old->entries[i].line, name);
    return 0;
}

int gw_auth_token_new(const char *path, const struct gw_token_spec *spec, char **ret_token,
                      char **ret_error)
{
    struct gw_buf old_text = GW_BUF_INIT, content = GW_BUF_INIT;
    struct gw_auth *old = NULL;
    unsigned char digest[DIGEST_LEN];
    char token[GW_TOKEN_LEN + 1], hex[DIGEST_LEN * 2 + 1], default_name[GW_TOKEN_NAME_MAX + 1];
    mode_t mode;
    int r;

    *ret_error = NULL;
    r = spec_check(path, spec, ret_error);
    r = r ? r : read_existing(path, &old_text, &old, &mode, ret_error);
    if (r < 0)
        goto out;
    if (token_make(token) < 0 || sha256(token, strlen(token), digest) < 0) {
        r = set_error(ret_error, -EIO, "cannot make a random token (OpenSSL's RAND_bytes failed)");
        goto out;
    }
    format_digest(digest, hex);
    snprintf(default_name, sizeof(default_name), "%s-%.8s", gw_actor_role_name(spec->role), hex);
    struct entry_text e = {
        .name = spec->name ? spec->name : default_name,
        .role = gw_actor_role_name(spec->role),
        .scope = spec->scope,
        .post = spec->has_post ? gw_role_name(spec->post) : NULL,
        .person = spec->person,
        .sha256 = hex,
    };
    r = name_free(old, e.name, path, ret_error);
    if (r < 0)
        goto out;
    r = build_content(path, &old_text, old, &e, &content);
    if (r < 0) {
        set_error(ret_error, r, "%s: cannot add the entry: %s", path,
                  r == -EINVAL ? "the result would not load" : strerror(-r));
        goto out;
    }
    r = replace_file(path, &content, mode);
    if (r < 0) {
        set_error(ret_error, r, "%s: cannot write: %s", path, strerror(-r));
        goto out;
    }
    *ret_token = strdup(token);
    if (!*ret_token)
        r = set_error(ret_error, -ENOMEM, "out of memory");
out:
    OPENSSL_cleanse(token, sizeof(token));
    gw_auth_free(old);
    gw_buf_free(&old_text);
    gw_buf_free(&content);
    return r;
}

/* ---- failed-login limiter -------------------------------------------- */

#define LIMITER_PROBES 8
#define ADDRESS_MAX 64 /* an IPv6 text address is at most 45 */
#define WINDOW_NS (60 * INT64_C(1000000000))

struct limiter_slot {
    char address[ADDRESS_MAX];
    int64_t window; /* minute number since the epoch; 0: free */
    int count;
};

struct gw_auth_limiter {
    pthread_mutex_t lock;
    int per_minute;
    size_t n;
    struct limiter_slot *slots;
};

struct gw_auth_limiter *gw_auth_limiter_new(int per_minute, size_t slots)
{
    struct gw_auth_limiter *l = calloc(1, sizeof(*l));

    if (!l)
        return NULL;
    l->per_minute = per_minute;
    l->n = slots > LIMITER_PROBES ? slots : LIMITER_PROBES;
    l->slots = calloc(l->n, sizeof(*l->slots));
    if (!l->slots) {
        free(l);
        return NULL;
    }
    pthread_mutex_init(&l->lock, NULL);
    return l;
}

void gw_auth_limiter_free(struct gw_auth_limiter *limiter)
{
    if (!limiter)
        return;
    pthread_mutex_destroy(&limiter->lock);
    free(limiter->slots);
    free(limiter);
}

static uint64_t fnv1a(const char *s)
{
    uint64_t h = UINT64_C(14695981039346656037);

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * UINT64_C(1099511628211);
    return h;
}

/* The slot counting address in this window: its own, else a free or
 * stale one among the probed, else the probed one with the fewest
 * failures (forgotten). Called locked. */
static struct limiter_slot *limiter_slot(struct gw_auth_limiter *l, const char *address,
                                         int64_t window)
{
    size_t start = (size_t)(fnv1a(address) % l->n);
    struct limiter_slot *spare = NULL;

    for (size_t i = 0; i < LIMITER_PROBES; i++) {
        struct limiter_slot *s = &l->slots[(start + i) % l->n];

        if (s->window != 0 && strcmp(s->address, address) == 0) {
            if (s->window != window) {
                s->window = window;
                s->count = 0;
            }
            return s;
        }
        if (!spare || (spare->window == window && (s->window != window || s->count < spare->count)))
            spare = s;
    }
    snprintf(spare->address, sizeof(spare->address), "%s", address);
    spare->window = window;
    spare->count = 0;
    return spare;
}

bool gw_auth_limiter_hit(struct gw_auth_limiter *limiter, const char *address, int64_t now_ns)
{
    int64_t window = now_ns / WINDOW_NS + 1; /* + 1: 0 marks a free slot */
    struct limiter_slot *s;
    bool over;

    pthread_mutex_lock(&limiter->lock);
    s = limiter_slot(limiter, address ? address : "?", window);
    if (s->count < limiter->per_minute + 1)
        s->count++;
    over = s->count > limiter->per_minute;
    pthread_mutex_unlock(&limiter->lock);
    return over;
}
