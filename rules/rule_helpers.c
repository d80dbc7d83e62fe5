/* The rules' helper duration(), and the duration arguments of window(),
 * held() and rule{silence=} (rule__duration_at). window() and held() are
 * in rule_window.c.
 */
#include <errno.h>
#include <lauxlib.h>
#include <lua.h>
#include <math.h>
#include <stdint.h>

#include "gw_duration.h"
#include "rule_int.h"

/* The most a number of seconds may say: gw_duration_parse's own bound. */
#define DURATION_MAX_S (100.0 * 365 * 86400)

int rule__duration_at(lua_State *L, int idx, double *ret_seconds)
{
    int64_t ns;
    double v;
    int r;

    if (lua_type(L, idx) == LUA_TSTRING) {
        r = gw_duration_parse(lua_tostring(L, idx), &ns);
        if (r < 0)
            return r;
        v = (double)ns / 1e9;
    } else if (lua_type(L, idx) == LUA_TNUMBER) {
        v = lua_tonumber(L, idx);
        if (!(v >= 0 && v <= DURATION_MAX_S))
            return -ERANGE;
    } else {
        return -EINVAL;
    }
    *ret_seconds = v;
    return 0;
}

/* duration("15m") -> 900: seconds, a whole number when whole. The same
 * parser as the configuration's (gw_duration_parse). */
static int api_duration(lua_State *L)
{
    double v;

    if (rule__duration_at(L, 1, &v) < 0) {
        if (lua_type(L, 1) == LUA_TSTRING)
            return luaL_error(L,
                              "duration: bad duration '%s' (such as \"90s\", \"15m\", \"2h\", "
                              "\"1d\", \"500ms\")",
                              lua_tostring(L, 1));
        return luaL_error(L, "duration: needs a string such as \"15m\" or a number of seconds");
    }
    if (v == floor(v) && v <= 9e15)
        lua_pushinteger(L, (lua_Integer)v);
    else
        lua_pushnumber(L, v);
    return 1;
}

void rule__helpers_register(lua_State *L)
{
    lua_pushcfunction(L, api_duration);
    lua_setfield(L, -2, "duration");
}
