-- fire.lua: fire rules (消防), for smoke detectors (烟感探测器), combustible
-- gas detectors (可燃气体探测器) and temperature sensors.
--
-- Who reads this: fire liaisons (消防联络员). docs/rules.md explains every
-- word used here. Every case below goes to the grid's firefighter
-- (网格消防员). A rule never clears a fire case: the people on the ground
-- close it.
--
-- What the devices send (the names the gridsim fleet uses too):
--   smoke detectors (type "smoke"):
--     smoke    smoke density, an obscuration figure. Clean air reads 0.00
--              to 0.05; the simulator's alarm readings send 0.15 to 0.50.
--     temp     temperature at the detector, in °C (rooms: about 18 to 28).
--     alarm    true when the detector itself has gone off.
--     battery  see maintenance.lua.
--   gas detectors (type "gas"):
--     gas      gas concentration in %LEL: percent of the lower explosive
--              limit. 0 is clean air; 100 means the mix can explode.
--     alarm    true when the detector itself has gone off.
--   temperature sensors (type "temperature"): temp in °C, humidity in %.

-- Severity ---------------------------------------------------------------
--
-- Every fire rule names a usual severity, and this one function raises
-- it where a fire is worse:
--   one step in a crowded grid (人员密集场所, grid type "crowded"),
--   one step in a grid at level attention (重点关注) or governance
--   (综合治理),
-- never above critical. So "major" becomes "critical" in either case.
-- To change how severities rise, change only this function.

local SEVERITIES = { "info", "minor", "major", "critical" }
local RANK = { info = 1, minor = 2, major = 3, critical = 4 }

local function fire_severity(usual, grid)
    local rank = RANK[usual]
    if grid and grid.type == "crowded" then
        rank = rank + 1
    end
    if grid and (grid.level == "attention" or grid.level == "governance") then
        rank = rank + 1
    end
    return SEVERITIES[math.min(rank, #SEVERITIES)]
end

-- A number from a reading, or nil when the device did not send one (or
-- sent text): the rules below compare only numbers.
local function number(value)
    if type(value) == "number" then
        return value
    end
    return nil
end

-- fire.smoke: smoke over the alarm threshold --------------------------------

-- Alarm at 0.10: twice the top of the clean-air range, so that dust or
-- steam on a normal day does not open cases, while real smoke does. If
-- your detectors report in another unit, change this one number.
local SMOKE_ALARM = 0.10

rule{
    name = "fire.smoke",
    match = { type = "smoke" },          -- only smoke detectors
    on_reading = function(r)
        local smoke = number(r.fields.smoke)
        local high = smoke ~= nil and smoke >= SMOKE_ALARM
        local alarm = r.fields.alarm == true
        if not high and not alarm then
            return                       -- normal reading: nothing to do
        end

        local detail
        if high then
            detail = string.format("烟雾浓度 %.3f（报警阈值 %.2f）", smoke, SMOKE_ALARM)
        else
            detail = "探测器自身报警"
        end
        if alarm and high then
            detail = detail .. "，探测器自身报警"
        end

        -- One case per detector: while it stays open, further alarms from
        -- the same detector update it (count, last seen, highest severity).
        open_case{
            category = "fire.smoke",
            severity = fire_severity("major", r.grid),
            role = "firefighter",
            title = "烟感报警 " .. r.device,
            detail = detail,
        }
    end,
}

-- fire.smoke_heat_rise: smoke and temperature rising together ----------------
--
-- A smoldering fire makes both smoke and heat climb, often before the
-- smoke passes the alarm threshold. Over the last minute of readings, this
-- rule opens a case when the smoke rises at SMOKE_RATE or more per minute
-- AND the temperature at TEMP_RATE °C or more per minute.
--
-- A rate needs at least two readings in the minute. Detectors that report
-- twice a day send nothing for this rule to see; it works for detectors
-- that report often when something changes.
--
-- The MIN_ figures keep a normal wobble from looking like a rise: clean
-- air reads anywhere from 0.00 to 0.05, a room's temperature moves a degree
-- or two, and two readings a few seconds apart make a small wobble look
-- like a steep rate. So the smoke must also have moved by more than the
-- whole clean-air range within the minute, and the temperature by 3 °C.

local RISE_WINDOW = 60        -- seconds of readings looked at
local SMOKE_RATE = 0.05       -- smoke, per minute
local TEMP_RATE = 3           -- °C per minute
local MIN_SMOKE_RISE = 0.06   -- smoke, highest minus lowest in the minute
local MIN_TEMP_RISE = 3       -- °C, highest minus lowest in the minute

rule{
    name = "fire.smoke_heat_rise",
    match = { type = "smoke", field = { "smoke", "temp" } },
    on_reading = function(r)
        local smoke = number(r.fields.smoke)
        local temp = number(r.fields.temp)
        if smoke == nil or temp == nil then
            return
        end
        local ws = window("smoke", RISE_WINDOW)
        local wt = window("temp", RISE_WINDOW)
        ws:push(smoke)
        wt:push(temp)

        local smoke_rate = ws:rate()     -- per second; nil with one reading
        local temp_rate = wt:rate()
        if smoke_rate == nil or temp_rate == nil then
            return
        end
        smoke_rate = smoke_rate * 60     -- per minute
        temp_rate = temp_rate * 60
        if smoke_rate < SMOKE_RATE or temp_rate < TEMP_RATE then
            return
        end
        if ws:max() - ws:min() < MIN_SMOKE_RISE or wt:max() - wt:min() < MIN_TEMP_RISE then
            return
        end

        open_case{
            category = "fire.smoke_heat_rise",
            severity = fire_severity("major", r.grid),
            role = "firefighter",
            title = "烟温同升 " .. r.device,
            detail = string.format("一分钟内烟雾每分钟上升 %.3f（现 %.3f），温度每分钟上升 %.1f °C（现 %.1f °C）",
                                   smoke_rate, smoke, temp_rate, temp),
        }
    end,
}

-- fire.heat_rise: temperature rising fast (差温, rate of rise) ---------------
--
-- Rate-of-rise heat detectors (差温火灾探测器) alarm when the temperature
-- climbs faster than a set rate, whatever the temperature itself: the
-- usual figure is 15 °F, about 8.3 °C, per minute (NFPA 72 / UL 521). This
-- rule uses 8 °C per minute, over the last minute of readings, for smoke
-- detectors that report a temperature and for temperature sensors.
-- As above, the temperature must also have moved by at least 3 °C within
-- the minute, so that two close readings a few tenths apart do not count.

local HEAT_WINDOW = 60        -- seconds of readings looked at
local HEAT_RATE = 8           -- °C per minute
local MIN_HEAT_RISE = 3       -- °C, highest minus lowest in the minute

rule{
    name = "fire.heat_rise",
    match = { type = { "smoke", "temperature" }, field = "temp" },
    on_reading = function(r)
        local temp = number(r.fields.temp)
        if temp == nil then
            return
        end
        local w = window("temp", HEAT_WINDOW)
        w:push(temp)
        local rate = w:rate()
        if rate == nil then
            return
        end
        rate = rate * 60                 -- °C per minute
        if rate < HEAT_RATE or w:max() - w:min() < MIN_HEAT_RISE then
            return
        end

        open_case{
            category = "fire.heat_rise",
            severity = fire_severity("major", r.grid),
            role = "firefighter",
            title = "差温报警 " .. r.device,
            detail = string.format("温度每分钟上升 %.1f °C（报警阈值 %d °C/分钟），现 %.1f °C",
                                   rate, HEAT_RATE, temp),
        }
    end,
}

-- fire.gas: combustible gas leak ----------------------------------------------

-- The usual two alarm levels of gas detectors: 20 %LEL (leak, act now) and
-- 50 %LEL (danger, evacuate). A leak is major (raised as every fire case
-- is, see fire_severity); danger is critical everywhere.
local LEAK = 20
local DANGER = 50

rule{
    name = "fire.gas",
    match = { type = "gas" },
    on_reading = function(r)
        local gas = number(r.fields.gas)
        local alarm = r.fields.alarm == true
        if not alarm and (gas == nil or gas < LEAK) then
            return
        end

        local usual = "major"
        if gas and gas >= DANGER then
            usual = "critical"
        end

        open_case{
            category = "fire.gas",
            severity = fire_severity(usual, r.grid),
            role = "firefighter",
            title = "燃气泄漏 " .. r.device,
            detail = gas and string.format("浓度 %.0f%%LEL", gas) or "探测器自身报警",
        }
    end,
}
