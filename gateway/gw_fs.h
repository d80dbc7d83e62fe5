/* gw_fs: making the directories gridgate's files live in.
 *
 * The configuration names files (the journal's directory, the case store,
 * the dead-letter file, the tokens file) relative to the config file; a
 * fresh installation has none of their directories yet. Holds no state.
 */
#ifndef GW_FS_H
#define GW_FS_H

/* Creates path and every missing directory above it (mode 0750). Returns
 * 0 (also when it exists) or a negative errno. */
int gw_mkdir_p(const char *path);
/* The same for the directory a file path is in ("a/b/c.db" -> "a/b"). */
int gw_mkdir_parent(const char *file_path);

#endif
