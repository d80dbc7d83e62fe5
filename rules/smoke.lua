-- smoke.lua: fire rules for smoke detectors (烟感探测器).
--
-- Who reads this: fire liaisons (消防联络员). Each rule{} below is one
-- rule; docs/liaisons.md explains every word used here.
--
-- What a smoke detector sends (device type "smoke"):
--   smoke  the smoke density the detector measures, as an obscuration
--          figure. Clean air reads 0.00 to 0.05 (that is what the gridsim
--          fleet sends when nothing is burning).
--   alarm  true when the detector itself has gone off.
--   battery, temp: see battery.lua; not used here.

-- Alarm at 0.10: twice the top of the clean-air range, so that dust or
-- steam on a normal day does not open cases, while real smoke does. If
-- your detectors report in another unit, change this one number.
local SMOKE_ALARM = 0.10

rule{
    name = "fire.smoke",
    match = { type = "smoke" },          -- only smoke detectors
    on_reading = function(r)
        local smoke = r.fields.smoke     -- nil if this reading has no smoke value
        local high = type(smoke) == "number" and smoke >= SMOKE_ALARM
        local alarm = r.fields.alarm == true
        if not high and not alarm then
            return                       -- normal reading: nothing to do
        end

        -- A fire where many people gather (人员密集场所) is more urgent.
        local severity = "major"
        if r.grid and r.grid.type == "crowded" then
            severity = "critical"
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
        -- the same detector update it (count, last seen) instead of
        -- opening new ones. We never clear a fire case from a rule: the
        -- people on the ground close it.
        open_case{
            category = "fire.smoke",
            severity = severity,
            role = "firefighter",        -- 网格消防员 of the device's grid
            title = "烟感报警 " .. r.device,
            detail = detail,
        }
    end,
}
