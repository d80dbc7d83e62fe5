-- police.lua: public-security rules (公安), for video cameras.
--
-- Who reads this: police liaisons (公安联络员). docs/rules.md explains
-- every word used here. Every case below goes to the grid's police officer
-- (网格警员).
--
-- What a camera sends (device type "camera"):
--   readings (devices/{id}/telemetry), every few seconds to minutes:
--     people   how many people the camera counts in its picture
--     density  people / the place's capacity, from 0 (empty) to 1 (full);
--              it can go above 1 when a place is over-full
--   events (devices/{id}/event), when the camera's own video analytics
--   (Hikvision VCA) see something:
--     event    the name of what it saw, for example "VCA_INTRUSION"
--              (周界入侵: someone entered a guarded area),
--              "VCA_TRAVERSE_PLANE" (越界: someone crossed a guarded line),
--              "VCA_HIGH_DENSITY" (人员聚集), or "tamper" (the camera was
--              covered, turned away or damaged)
--     tamper   true when the camera reports tampering, false when the
--              picture is back to normal
-- Camera integrations should send these names: the rules read exactly
-- them.

-- Where crowds matter: grids of type crowded (人员密集场所), and grids at
-- level attention (重点关注) or governance (综合治理).
local function crowd_watched(grid)
    if grid == nil then
        return false
    end
    return grid.type == "crowded" or grid.level == "attention" or grid.level == "governance"
end

-- police.crowd: crowd density high for several minutes ----------------------
--
-- One reading over the threshold is not a crowd: people pass in front of
-- a camera. The rule opens a case only when every reading for CROWD_HOLD
-- seconds has been at or above CROWD_HIGH, and only in the grids above.
-- Once the density falls below CROWD_OK the case is cleared; between the
-- two figures nothing changes, so a density wobbling around one figure
-- does not open and clear the case over and over.

local CROWD_HIGH = 0.8        -- 80 % of the place's capacity
local CROWD_OK = 0.6          -- cleared below 60 %
local CROWD_HOLD = 300        -- seconds (5 minutes)

rule{
    name = "police.crowd",
    match = { type = "camera", field = "density" },
    on_reading = function(r)
        local density = r.fields.density
        if type(density) ~= "number" or not crowd_watched(r.grid) then
            return
        end
        if held("dense", density >= CROWD_HIGH, CROWD_HOLD) then
            local people = r.fields.people
            local detail = string.format("人员密度 %.0f%%（阈值 %.0f%%），已持续 %d 分钟以上",
                                         density * 100, CROWD_HIGH * 100, CROWD_HOLD // 60)
            if type(people) == "number" then
                detail = detail .. string.format("，约 %.0f 人", people)
            end
            open_case{
                category = "police.crowd",
                severity = "major",
                role = "police",
                title = "人员聚集 " .. r.device,
                detail = detail,
            }
        elseif density < CROWD_OK then
            clear_case{}
        end
    end,
}

-- police.intrusion: intrusion at night ---------------------------------------
--
-- Someone entering a guarded area, or crossing a guarded line, is normal
-- by day and suspicious at night. NIGHT_FROM to NIGHT_TO is Beijing time
-- (UTC+8 all year, no summer time), worked out from the event's own time:
-- the rule does not depend on the time zone the gateway's computer is set
-- to. Outside China, set UTC_OFFSET to your local offset (and mind summer
-- time, which a fixed offset does not follow).

local UTC_OFFSET = 8 * 3600   -- seconds: Beijing time is UTC+8
local NIGHT_FROM = 22         -- 22:00
local NIGHT_TO = 6            -- to 06:00 the next morning

local INTRUSION_EVENTS = {
    VCA_INTRUSION = "周界入侵",
    VCA_TRAVERSE_PLANE = "越界",
}

-- The local hour (0 to 23) of a time in milliseconds, such as e.ts.
local function local_hour(ts_ms)
    return tonumber(os.date("!%H", ts_ms // 1000 + UTC_OFFSET))
end

local function at_night(ts_ms)
    local hour = local_hour(ts_ms)
    return hour >= NIGHT_FROM or hour < NIGHT_TO
end

rule{
    name = "police.intrusion",
    match = { type = "camera" },
    on_event = function(e)
        local what = INTRUSION_EVENTS[e.fields.event]
        if e.kind ~= "event" or what == nil or not at_night(e.ts) then
            return
        end
        open_case{
            category = "police.intrusion",
            severity = "major",
            role = "police",
            title = "夜间入侵 " .. e.device,
            detail = string.format("%s（%s），北京时间 %s", what, e.fields.event,
                                   os.date("!%H:%M", e.ts // 1000 + UTC_OFFSET)),
        }
    end,
}

-- police.tamper: a camera covered, turned away or damaged --------------------
--
-- A blind camera protects nobody. Cameras say so in an event (event =
-- "tamper", or tamper = true), some also in their readings (tamper =
-- true). The case is cleared when the camera reports tamper = false
-- (picture back to normal).

-- true: tampered; false: back to normal; nil: this message says neither.
local function tampered(fields)
    local event = fields.event
    if fields.tamper == true or (type(event) == "string" and event:lower() == "tamper") then
        return true
    end
    if fields.tamper == false then
        return false
    end
    return nil
end

local function check_tamper(msg)
    local t = tampered(msg.fields)
    if t == true then
        open_case{
            category = "police.tamper",
            severity = "major",
            role = "police",
            title = "摄像机遮挡或破坏 " .. msg.device,
            detail = "摄像机报告画面被遮挡、移位或设备被破坏",
        }
    elseif t == false then
        -- Costs nothing when no case of this rule is open about the camera.
        clear_case{}
    end
end

rule{
    name = "police.tamper",
    match = { type = "camera" },
    on_reading = check_tamper,
    on_event = function(e)
        if e.kind == "event" then
            check_tamper(e)
        end
    end,
}
