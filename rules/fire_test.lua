-- fire_test.lua: tests of rules/fire.lua. Run: gridgate rules test rules/

-- Grids of each kind the fire rules tell apart.
local function grid(id, kind, level)
    return { id = id, type = kind, level = level,
             roster = { firefighter = "王秀英", manager = "李建国", police = "张伟" } }
end

local HOME = grid("110101001001001", "residential", "routine")
local MALL = grid("110101001001002", "crowded", "routine")
local WATCHED = grid("110101001001003", "residential", "attention")
local GOVERNED = grid("110101001001004", "commercial", "governance")
local PREVENTION = grid("110101001001005", "institution", "prevention")
local MALL_WATCHED = grid("110101001001006", "crowded", "attention")

-- fire.smoke ---------------------------------------------------------------

test("fire.smoke: smoke over 0.10 opens a major case for the firefighter", function(t)
    t.device{ id = "smoke-1", type = "smoke", grid = HOME }
    t.reading{ device = "smoke-1", smoke = 0.31, temp = 23.0, alarm = false }
    t.expect_case{ rule = "fire.smoke", subject = "smoke-1", category = "fire.smoke",
                   severity = "major", role = "firefighter", title = "烟感报警 smoke-1" }
end)

test("fire.smoke: exactly 0.10 is an alarm", function(t)
    t.device{ id = "smoke-1", type = "smoke", grid = HOME }
    t.reading{ device = "smoke-1", smoke = 0.10 }
    t.expect_case{ rule = "fire.smoke", subject = "smoke-1", severity = "major" }
end)

test("fire.smoke: the detector's own alarm alone opens the case", function(t)
    t.device{ id = "smoke-1", type = "smoke", grid = HOME }
    t.reading{ device = "smoke-1", smoke = 0.02, alarm = true }
    t.expect_case{ rule = "fire.smoke", subject = "smoke-1", category = "fire.smoke",
                   severity = "major", role = "firefighter" }
end)

test("fire.smoke: clean air (0.00 to 0.05) opens nothing", function(t)
    t.device{ id = "smoke-1", type = "smoke", grid = HOME }
    t.reading{ device = "smoke-1", smoke = 0.0, temp = 22.5, alarm = false, battery = 87 }
    t.advance("1m")
    t.reading{ device = "smoke-1", smoke = 0.05, temp = 22.9, alarm = false, battery = 87 }
    t.advance("1m")
    t.reading{ device = "smoke-1", smoke = 0.099, temp = 23.0, alarm = false, battery = 87 }
    t.expect_no_case{ rule = "fire.smoke" }
end)

test("fire.smoke: a reading without smoke does not fail", function(t)
    t.device{ id = "smoke-1", type = "smoke", grid = HOME }
    t.reading{ device = "smoke-1", battery = 87 }
    t.expect_no_case{ rule = "fire.smoke" }
end)

test("fire.smoke: only smoke detectors", function(t)
    t.device{ id = "water-1", type = "water", grid = HOME }
    t.reading{ device = "water-1", smoke = 0.5, alarm = true }
    t.expect_no_case{ rule = "fire.smoke" }
end)

test("fire.smoke: repeated alarms update one case", function(t)
    t.device{ id = "smoke-1", type = "smoke", grid = HOME }
    t.reading{ device = "smoke-1", smoke = 0.20 }
    t.advance("30s")
    t.reading{ device = "smoke-1", smoke = 0.35, alarm = true }
    t.expect_case{ rule = "fire.smoke", subject = "smoke-1", count = 2 }
end)

test("fire.smoke: severity rises in crowded, attention and governance grids", function(t)
    t.device{ id = "smoke-mall", type = "smoke", grid = MALL }
    t.device{ id = "smoke-watched", type = "smoke", grid = WATCHED }
    t.device{ id = "smoke-governed", type = "smoke", grid = GOVERNED }
    t.device{ id = "smoke-prevention", type = "smoke", grid = PREVENTION }
    t.device{ id = "smoke-mall-watched", type = "smoke", grid = MALL_WATCHED }
    for _, id in ipairs{ "smoke-mall", "smoke-watched", "smoke-governed", "smoke-prevention",
                         "smoke-mall-watched" } do
        t.reading{ device = id, smoke = 0.2 }
    end
    t.expect_case{ rule = "fire.smoke", subject = "smoke-mall", severity = "critical" }
    t.expect_case{ rule = "fire.smoke", subject = "smoke-watched", severity = "critical" }
    t.expect_case{ rule = "fire.smoke", subject = "smoke-governed", severity = "critical" }
    t.expect_case{ rule = "fire.smoke", subject = "smoke-prevention", severity = "major" }
    -- two reasons to rise still end at critical
    t.expect_case{ rule = "fire.smoke", subject = "smoke-mall-watched", severity = "critical" }
end)

test("fire.smoke: a fire case is never cleared by the rule", function(t)
    t.device{ id = "smoke-1", type = "smoke", grid = HOME }
    t.reading{ device = "smoke-1", smoke = 0.2 }
    t.advance("5m")
    t.reading{ device = "smoke-1", smoke = 0.01, alarm = false }
    t.expect_case{ rule = "fire.smoke", subject = "smoke-1" }
    t.expect_no_case{ rule = "fire.smoke", subject = "smoke-1", cleared = true }
end)

-- fire.smoke_heat_rise -----------------------------------------------------

-- Readings every 15 s: smoke and temperature climbing together, the smoke
-- staying below the 0.10 alarm threshold.
local function smoldering(t, id)
    local smoke = { 0.010, 0.030, 0.050, 0.070, 0.090 }
    local temp = { 22.0, 23.5, 25.0, 26.5, 28.0 }
    for i = 1, #smoke do
        if i > 1 then
            t.advance("15s")
        end
        t.reading{ device = id, smoke = smoke[i], temp = temp[i] }
    end
end

test("fire.smoke_heat_rise: smoke and temperature rising together open a case", function(t)
    t.device{ id = "smoke-1", type = "smoke", grid = HOME }
    smoldering(t, "smoke-1")
    t.expect_case{ rule = "fire.smoke_heat_rise", subject = "smoke-1",
                   category = "fire.smoke_heat_rise", severity = "major", role = "firefighter",
                   title = "烟温同升 smoke-1" }
    t.expect_no_case{ rule = "fire.smoke", subject = "smoke-1" }   -- still below 0.10
end)

test("fire.smoke_heat_rise: critical in a crowded grid", function(t)
    t.device{ id = "smoke-mall", type = "smoke", grid = MALL }
    smoldering(t, "smoke-mall")
    t.expect_case{ rule = "fire.smoke_heat_rise", subject = "smoke-mall", severity = "critical" }
end)

test("fire.smoke_heat_rise: smoke rising alone is not enough", function(t)
    t.device{ id = "smoke-1", type = "smoke", grid = HOME }
    local smoke = { 0.010, 0.030, 0.050, 0.070, 0.090 }
    for i = 1, #smoke do
        t.reading{ device = "smoke-1", smoke = smoke[i], temp = 22.0 + (i % 2) * 0.3 }
        t.advance("15s")
    end
    t.expect_no_case{ rule = "fire.smoke_heat_rise" }
end)

test("fire.smoke_heat_rise: temperature rising alone is not enough", function(t)
    t.device{ id = "smoke-1", type = "smoke", grid = HOME }
    local temp = { 22.0, 23.5, 25.0, 26.5, 28.0 }
    for i = 1, #temp do
        t.reading{ device = "smoke-1", smoke = 0.02, temp = temp[i] }
        t.advance("15s")
    end
    t.expect_no_case{ rule = "fire.smoke_heat_rise" }
end)

test("fire.smoke_heat_rise: normal wobble in close readings is not a rise", function(t)
    t.device{ id = "smoke-1", type = "smoke", grid = HOME }
    -- what the simulator sends: clean air 0.00-0.05, room temperature +-1 °C
    t.reading{ device = "smoke-1", smoke = 0.001, temp = 22.1 }
    t.advance("2s")
    t.reading{ device = "smoke-1", smoke = 0.049, temp = 23.9 }
    t.expect_no_case{ rule = "fire.smoke_heat_rise" }
end)

test("fire.smoke_heat_rise: a slow rise over hours is not a fire", function(t)
    t.device{ id = "smoke-1", type = "smoke", grid = HOME }
    t.reading{ device = "smoke-1", smoke = 0.01, temp = 18.0 }
    t.advance("2h")
    t.reading{ device = "smoke-1", smoke = 0.09, temp = 27.0 }
    t.expect_no_case{ rule = "fire.smoke_heat_rise" }
end)

-- fire.heat_rise -------------------------------------------------------------

test("fire.heat_rise: 10 °C in a minute opens a case", function(t)
    t.device{ id = "smoke-1", type = "smoke", grid = HOME }
    t.reading{ device = "smoke-1", smoke = 0.01, temp = 24.0 }
    t.advance("30s")
    t.reading{ device = "smoke-1", smoke = 0.01, temp = 29.0 }
    t.advance("30s")
    t.reading{ device = "smoke-1", smoke = 0.01, temp = 34.0 }
    t.expect_case{ rule = "fire.heat_rise", subject = "smoke-1", category = "fire.heat_rise",
                   severity = "major", role = "firefighter", title = "差温报警 smoke-1" }
end)

test("fire.heat_rise: also for temperature sensors; critical at level attention", function(t)
    t.device{ id = "temp-1", type = "temperature", grid = WATCHED }
    t.reading{ device = "temp-1", temp = 25.0, humidity = 40.0 }
    t.advance("20s")
    t.reading{ device = "temp-1", temp = 29.0, humidity = 38.0 }
    t.expect_case{ rule = "fire.heat_rise", subject = "temp-1", severity = "critical" }
end)

test("fire.heat_rise: 6 °C per minute is below the threshold", function(t)
    t.device{ id = "smoke-1", type = "smoke", grid = HOME }
    t.reading{ device = "smoke-1", temp = 24.0 }
    t.advance("30s")
    t.reading{ device = "smoke-1", temp = 27.0 }
    t.advance("30s")
    t.reading{ device = "smoke-1", temp = 30.0 }
    t.expect_no_case{ rule = "fire.heat_rise" }
end)

test("fire.heat_rise: a tenth of a degree a second apart is not a rise", function(t)
    t.device{ id = "smoke-1", type = "smoke", grid = HOME }
    t.reading{ device = "smoke-1", temp = 24.0 }
    t.advance("1s")
    t.reading{ device = "smoke-1", temp = 24.3 }   -- 18 °C/min, but only 0.3 °C
    t.expect_no_case{ rule = "fire.heat_rise" }
end)

test("fire.heat_rise: a summer afternoon is not a fire", function(t)
    t.device{ id = "temp-1", type = "temperature", grid = HOME }
    t.reading{ device = "temp-1", temp = 22.0 }
    t.advance("1h")
    t.reading{ device = "temp-1", temp = 35.0 }
    t.expect_no_case{ rule = "fire.heat_rise" }
end)

test("fire.heat_rise: not for door sensors", function(t)
    t.device{ id = "door-1", type = "door", grid = HOME }
    t.reading{ device = "door-1", temp = 20.0 }
    t.advance("30s")
    t.reading{ device = "door-1", temp = 40.0 }
    t.expect_no_case{ rule = "fire.heat_rise" }
end)

-- fire.gas -------------------------------------------------------------------

test("fire.gas: 20 %LEL is a leak: major, for the firefighter", function(t)
    t.device{ id = "gas-1", type = "gas", grid = HOME }
    t.reading{ device = "gas-1", gas = 20.0, battery = 80 }
    t.expect_case{ rule = "fire.gas", subject = "gas-1", category = "fire.gas",
                   severity = "major", role = "firefighter", title = "燃气泄漏 gas-1" }
end)

test("fire.gas: 50 %LEL is critical anywhere", function(t)
    t.device{ id = "gas-1", type = "gas", grid = HOME }
    t.reading{ device = "gas-1", gas = 55.0 }
    t.expect_case{ rule = "fire.gas", subject = "gas-1", severity = "critical" }
end)

test("fire.gas: the detector's own alarm opens the case", function(t)
    t.device{ id = "gas-1", type = "gas", grid = HOME }
    t.reading{ device = "gas-1", gas = 3.0, alarm = true }
    t.expect_case{ rule = "fire.gas", subject = "gas-1", severity = "major" }
end)

test("fire.gas: a leak is critical in crowded and governance grids", function(t)
    t.device{ id = "gas-mall", type = "gas", grid = MALL }
    t.device{ id = "gas-gov", type = "gas", grid = GOVERNED }
    t.reading{ device = "gas-mall", gas = 25.0 }
    t.reading{ device = "gas-gov", gas = 25.0 }
    t.expect_case{ rule = "fire.gas", subject = "gas-mall", severity = "critical" }
    t.expect_case{ rule = "fire.gas", subject = "gas-gov", severity = "critical" }
end)

test("fire.gas: normal kitchen air (0 to 5 %LEL) opens nothing", function(t)
    t.device{ id = "gas-1", type = "gas", grid = MALL }
    t.reading{ device = "gas-1", gas = 4.9, battery = 80 }
    t.advance("1m")
    t.reading{ device = "gas-1", gas = 19.9, battery = 80 }
    t.advance("1m")
    t.reading{ device = "gas-1", battery = 80 }
    t.expect_no_case{ rule = "fire.gas" }
end)
