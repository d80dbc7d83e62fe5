-- gas.lua: combustible gas detectors (可燃气体探测器), in kitchens,
-- boiler rooms and gas meter rooms.
--
-- Who reads this: fire liaisons.
--
-- What a gas detector sends (device type "gas"):
--   gas    gas concentration in %LEL: percent of the lower explosive
--          limit. 0 is clean air; 100 means the mix can explode.
--   alarm  true when the detector itself has gone off.

-- The usual two alarm levels of such detectors: 20 %LEL (leak, act
-- now) and 50 %LEL (danger, evacuate).
local LEAK = 20
local DANGER = 50

rule{
    name = "fire.gas",
    match = { type = "gas" },
    on_reading = function(r)
        local gas = r.fields.gas
        local alarm = r.fields.alarm == true
        if type(gas) ~= "number" then
            gas = nil
        end
        if not alarm and (gas == nil or gas < LEAK) then
            return
        end

        local severity = "major"
        if (gas and gas >= DANGER) or (r.grid and r.grid.type == "crowded") then
            severity = "critical"
        end

        open_case{
            category = "fire.gas",
            severity = severity,
            role = "firefighter",
            title = "燃气泄漏 " .. r.device,
            detail = gas and string.format("浓度 %.0f%%LEL", gas) or "探测器自身报警",
        }
    end,
}
