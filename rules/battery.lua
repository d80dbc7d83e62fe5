-- battery.lua: low batteries, for every battery-powered device.
--
-- Who reads this: fire and police liaisons, and grid managers. A smoke
-- detector or door sensor with a flat battery protects nobody, so a low
-- battery opens a small case for the grid's manager (网格管理员), who
-- arranges the replacement.
--
-- What devices send: battery = charge left, in percent (0 to 100).

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
            clear_case{}                 -- the battery was replaced or recharged
        end
    end,
}
