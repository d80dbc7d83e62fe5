-- maintenance.lua: devices that need looking after, for every device type.
--
-- Who reads this: grid managers (网格管理员), and the fire and police
-- liaisons whose rules depend on working devices. docs/rules.md explains
-- every word used here. Every case below is minor and goes to the grid's
-- manager, who arranges a visit, a new battery or a repair.
--
-- What these rules look at:
--   battery   charge left, in percent (0 to 100), in any device's readings
--   silence   how long a device has sent nothing, against its heartbeat
--             (the longest a healthy device stays quiet: smoke detectors
--             report every 12 hours or so)
--   status    "online" / "offline", which devices (or the MQTT broker, on
--             their behalf when they drop off) send on devices/{id}/status
--
-- Not seen by rules: payloads the gateway could not decode. The gateway
-- counts those itself, per device (see docs/rules.md).

-- Clearing ----------------------------------------------------------------
--
-- The silence and offline rules see every message of every device and
-- say clear_case{} on each: the gateway knows which of its cases are open
-- (those opened before a restart too), so clearing when there is nothing
-- open costs nothing and needs nothing remembered here.

-- Times in messages are milliseconds since 1970; shown in Beijing time
-- (UTC+8), whatever the gateway's computer is set to.
local function beijing(ts_ms)
    return os.date("!%Y-%m-%d %H:%M", ts_ms // 1000 + 8 * 3600)
end

-- device.battery: low battery -----------------------------------------------
--
-- A smoke detector or door sensor with a flat battery protects nobody.

local LOW = 20      -- at or below this, open the case
local OK = 30       -- at or above this, the case is cleared again

-- Between 20 and 30 nothing changes: a battery reading that wobbles
-- around one threshold does not open and clear the case over and over.

rule{
    name = "device.battery",
    match = { field = "battery" },       -- any device type, if it reports a battery
    on_reading = function(r)
        local battery = r.battery
        if type(battery) ~= "number" then
            return
        end
        if battery <= LOW then
            open_case{
                category = "device.battery",
                severity = "minor",
                role = "manager",
                title = "设备电量低 " .. r.device,
                detail = string.format("电量 %d%%（%s）", math.floor(battery), r.type or "?"),
            }
        elseif battery >= OK then
            -- The battery was replaced or recharged.
            clear_case{}
        end
    end,
}

-- device.silent: a device that stopped reporting (deadman) --------------------
--
-- A device that has sent nothing for twice its heartbeat has missed two
-- reports in a row: it is off, broken, out of battery or out of radio
-- range. Once per silence the rule opens a case; as soon as the device is
-- heard again (a reading, an event, or its "online" status) the case is
-- cleared. An "offline" status does not count as hearing from it: the
-- broker sends that on the device's behalf.

rule{
    name = "device.silent",
    silence = { factor = 2 },            -- 2 x the device's heartbeat
    on_silence = function(d)
        local last
        if d.last_seen then
            last = "最后一次消息 " .. beijing(d.last_seen) .. "（北京时间）"
        else
            last = "网关启动以来从未收到消息"
        end
        local detail = string.format("已 %.1f 小时无消息，%s", d.silent_for / 3600, last)
        if d.heartbeat then
            detail = string.format("已 %.1f 小时无消息（心跳周期 %.1f 小时），%s",
                                   d.silent_for / 3600, d.heartbeat / 3600, last)
        end
        open_case{
            category = "device.silent",
            severity = "minor",
            role = "manager",
            title = "设备失联 " .. d.device,
            detail = detail,
        }
    end,
    on_reading = function(r)
        clear_case{}
    end,
    on_event = function(e)
        if e.kind == "status" and e.status == "offline" then
            return
        end
        clear_case{}
    end,
}

-- device.offline: a device says it went offline --------------------------------
--
-- Devices (or the broker, through their MQTT "last will") send
-- status "offline" when they disconnect and "online" when they are back.
-- Offline opens a case; online, or any reading or event from the device,
-- clears it.

rule{
    name = "device.offline",
    on_event = function(e)
        if e.kind == "status" and e.status == "offline" then
            open_case{
                category = "device.offline",
                severity = "minor",
                role = "manager",
                title = "设备离线 " .. e.device,
                detail = "设备报告离线，" .. beijing(e.ts) .. "（北京时间）",
            }
        else
            clear_case{}
        end
    end,
    on_reading = function(r)
        clear_case{}
    end,
}
