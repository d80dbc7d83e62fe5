/* gw_array: the element count of a fixed array, for every file that
 * walks a table of its own (routes, option tables, names). */
#ifndef GW_ARRAY_H
#define GW_ARRAY_H

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
