-- police_test.lua: tests of rules/police.lua. Run: gridgate rules test rules/

local function grid(id, kind, level)
    return { id = id, type = kind, level = level,
             roster = { police = "张伟", firefighter = "王秀英", manager = "李建国" } }
end

local HOME = grid("110101002001001", "residential", "routine")
local SQUARE = grid("110101002001002", "crowded", "routine")
local WATCHED = grid("110101002001003", "commercial", "attention")
local GOVERNED = grid("110101002001004", "residential", "governance")

-- police.crowd ----------------------------------------------------------------

-- Camera readings every 30 s for `seconds`, all at `density`.
local function crowd(t, id, density, seconds)
    t.reading{ device = id, people = math.floor(density * 150), density = density, online = true }
    for _ = 30, seconds, 30 do
        t.advance("30s")
        t.reading{ device = id, people = math.floor(density * 150), density = density, online = true }
    end
end

test("police.crowd: density 0.85 for 5 minutes in a crowded grid opens a case", function(t)
    t.device{ id = "cam-1", type = "camera", grid = SQUARE }
    crowd(t, "cam-1", 0.85, 300)
    t.expect_case{ rule = "police.crowd", subject = "cam-1", category = "police.crowd",
                   severity = "major", role = "police", title = "人员聚集 cam-1" }
end)

test("police.crowd: also in attention and governance grids", function(t)
    t.device{ id = "cam-w", type = "camera", grid = WATCHED }
    t.device{ id = "cam-g", type = "camera", grid = GOVERNED }
    crowd(t, "cam-w", 0.9, 300)
    crowd(t, "cam-g", 0.9, 300)
    t.expect_case{ rule = "police.crowd", subject = "cam-w", role = "police" }
    t.expect_case{ rule = "police.crowd", subject = "cam-g", role = "police" }
end)

test("police.crowd: held for less than 5 minutes opens nothing", function(t)
    t.device{ id = "cam-1", type = "camera", grid = SQUARE }
    crowd(t, "cam-1", 0.95, 270)
    t.expect_no_case{ rule = "police.crowd" }
end)

test("police.crowd: a dip below the threshold starts the 5 minutes again", function(t)
    t.device{ id = "cam-1", type = "camera", grid = SQUARE }
    crowd(t, "cam-1", 0.9, 240)
    t.advance("30s")
    t.reading{ device = "cam-1", people = 100, density = 0.7 }
    t.advance("30s")
    crowd(t, "cam-1", 0.9, 240)
    t.expect_no_case{ rule = "police.crowd" }
    t.advance("60s")
    t.reading{ device = "cam-1", people = 135, density = 0.9 }
    t.expect_case{ rule = "police.crowd", subject = "cam-1" }
end)

test("police.crowd: a residential grid at routine level is not watched", function(t)
    t.device{ id = "cam-1", type = "camera", grid = HOME }
    crowd(t, "cam-1", 0.95, 600)
    t.expect_no_case{ rule = "police.crowd" }
end)

test("police.crowd: normal occupancy opens nothing", function(t)
    t.device{ id = "cam-1", type = "camera", grid = SQUARE }
    crowd(t, "cam-1", 0.6, 900)
    t.expect_no_case{ rule = "police.crowd" }
end)

test("police.crowd: cleared when the density falls below 0.6, not at 0.7", function(t)
    t.device{ id = "cam-1", type = "camera", grid = SQUARE }
    crowd(t, "cam-1", 0.9, 300)
    t.expect_case{ rule = "police.crowd", subject = "cam-1" }
    t.advance("30s")
    t.reading{ device = "cam-1", people = 105, density = 0.7 }
    t.expect_no_case{ rule = "police.crowd", subject = "cam-1", cleared = true }
    t.advance("30s")
    t.reading{ device = "cam-1", people = 75, density = 0.5 }
    t.expect_cleared{ rule = "police.crowd", subject = "cam-1" }
end)

-- police.intrusion --------------------------------------------------------------
--
-- Times are UTC ("Z"); Beijing is 8 hours ahead: 15:30Z is 23:30 in Beijing.

test("police.intrusion: VCA_INTRUSION at 23:30 Beijing time opens a case", function(t)
    t.device{ id = "cam-1", type = "camera", grid = HOME }
    t.at("2026-11-28T15:30:00Z")
    t.event{ device = "cam-1", kind = "event", event = "VCA_INTRUSION" }
    t.expect_case{ rule = "police.intrusion", subject = "cam-1", category = "police.intrusion",
                   severity = "major", role = "police", title = "夜间入侵 cam-1" }
end)

test("police.intrusion: line crossing at 03:00 Beijing time opens a case", function(t)
    t.device{ id = "cam-1", type = "camera", grid = HOME }
    t.at("2026-11-28T19:00:00Z")
    t.event{ device = "cam-1", kind = "event", event = "VCA_TRAVERSE_PLANE" }
    t.expect_case{ rule = "police.intrusion", subject = "cam-1" }
end)

test("police.intrusion: night starts at 22:00 Beijing time", function(t)
    t.device{ id = "cam-1", type = "camera", grid = HOME }
    t.at("2026-11-28T13:59:59Z")                 -- 21:59:59
    t.event{ device = "cam-1", kind = "event", event = "VCA_INTRUSION" }
    t.expect_no_case{ rule = "police.intrusion" }
    t.advance("1s")                              -- 22:00:00
    t.event{ device = "cam-1", kind = "event", event = "VCA_INTRUSION" }
    t.expect_case{ rule = "police.intrusion", subject = "cam-1" }
end)

test("police.intrusion: night ends at 06:00 Beijing time", function(t)
    t.device{ id = "cam-1", type = "camera", grid = HOME }
    t.device{ id = "cam-2", type = "camera", grid = HOME }
    t.at("2026-11-28T21:59:59Z")                 -- 05:59:59
    t.event{ device = "cam-1", kind = "event", event = "VCA_INTRUSION" }
    t.expect_case{ rule = "police.intrusion", subject = "cam-1" }
    t.advance("1s")                              -- 06:00:00
    t.event{ device = "cam-2", kind = "event", event = "VCA_INTRUSION" }
    t.expect_no_case{ rule = "police.intrusion", subject = "cam-2" }
end)

test("police.intrusion: daytime intrusion opens nothing", function(t)
    t.device{ id = "cam-1", type = "camera", grid = HOME }
    t.at("2026-11-28T04:00:00Z")                 -- 12:00 in Beijing
    t.event{ device = "cam-1", kind = "event", event = "VCA_INTRUSION" }
    t.expect_no_case{ rule = "police.intrusion" }
end)

test("police.intrusion: other analytics at night open nothing", function(t)
    t.device{ id = "cam-1", type = "camera", grid = HOME }
    t.at("2026-11-28T16:00:00Z")                 -- midnight in Beijing
    t.event{ device = "cam-1", kind = "event", event = "VCA_LOITER" }
    t.event{ device = "cam-1", kind = "event", event = "VCA_HIGH_DENSITY" }
    t.event{ device = "cam-1", kind = "status", status = "offline" }
    t.expect_no_case{ rule = "police.intrusion" }
end)

test("police.intrusion: a reading saying intrusion is not an event", function(t)
    t.device{ id = "cam-1", type = "camera", grid = HOME }
    t.at("2026-11-28T16:00:00Z")
    t.reading{ device = "cam-1", event = "VCA_INTRUSION", people = 3, density = 0.02 }
    t.expect_no_case{ rule = "police.intrusion" }
end)

-- police.tamper -------------------------------------------------------------------

test("police.tamper: event tamper opens a major case for the police", function(t)
    t.device{ id = "cam-1", type = "camera", grid = HOME }
    t.event{ device = "cam-1", kind = "event", event = "tamper" }
    t.expect_case{ rule = "police.tamper", subject = "cam-1", category = "police.tamper",
                   severity = "major", role = "police", title = "摄像机遮挡或破坏 cam-1" }
end)

test("police.tamper: tamper = true in an event or a reading opens it", function(t)
    t.device{ id = "cam-1", type = "camera", grid = HOME }
    t.device{ id = "cam-2", type = "camera", grid = WATCHED }
    t.event{ device = "cam-1", kind = "event", tamper = true }
    t.reading{ device = "cam-2", people = 4, density = 0.1, tamper = true }
    t.expect_case{ rule = "police.tamper", subject = "cam-1" }
    t.expect_case{ rule = "police.tamper", subject = "cam-2" }
end)

test("police.tamper: tamper = false clears the case", function(t)
    t.device{ id = "cam-1", type = "camera", grid = HOME }
    t.event{ device = "cam-1", kind = "event", event = "tamper" }
    t.advance("10m")
    t.event{ device = "cam-1", kind = "event", tamper = false }
    t.expect_cleared{ rule = "police.tamper", subject = "cam-1" }
end)

test("police.tamper: a case left open before a restart is cleared by tamper = false", function(t)
    t.device{ id = "cam-1", type = "camera", grid = HOME }
    t.left_open{ rule = "police.tamper", subject = "cam-1", severity = "major" }
    t.reading{ device = "cam-1", people = 3, density = 0.1 }
    t.expect_no_case{ rule = "police.tamper", subject = "cam-1", cleared = true }
    t.reading{ device = "cam-1", people = 3, density = 0.1, tamper = false }
    t.expect_cleared{ rule = "police.tamper", subject = "cam-1" }
end)

test("police.tamper: normal camera traffic opens nothing", function(t)
    t.device{ id = "cam-1", type = "camera", grid = HOME }
    t.reading{ device = "cam-1", people = 12, density = 0.2, online = true }
    t.event{ device = "cam-1", kind = "event", event = "VCA_INTRUSION" }
    t.event{ device = "cam-1", kind = "event", tamper = false }
    t.expect_no_case{ rule = "police.tamper" }
end)

test("police.tamper: only cameras", function(t)
    t.device{ id = "smoke-1", type = "smoke", grid = HOME }
    t.event{ device = "smoke-1", kind = "event", tamper = true }
    t.expect_no_case{ rule = "police.tamper" }
end)
