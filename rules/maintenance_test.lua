-- maintenance_test.lua: tests of rules/maintenance.lua. Run: gridgate rules test rules/

local HOME = { id = "110101003001001", type = "residential", level = "routine",
               roster = { manager = "李建国", firefighter = "王秀英", police = "张伟" } }
local MALL = { id = "110101003001002", type = "crowded", level = "governance",
               roster = { manager = "赵敏" } }

-- device.battery ------------------------------------------------------------------

test("device.battery: 20 % or less opens a minor case for the manager", function(t)
    t.device{ id = "door-1", type = "door", grid = HOME }
    t.reading{ device = "door-1", open = false, battery = 12 }
    t.expect_case{ rule = "device.battery", subject = "door-1", category = "device.battery",
                   severity = "minor", role = "manager", title = "设备电量低 door-1" }
end)

test("device.battery: exactly 20 % opens it; any device type", function(t)
    t.device{ id = "smoke-1", type = "smoke", grid = MALL }
    t.reading{ device = "smoke-1", smoke = 0.01, temp = 22.0, battery = 20, alarm = false }
    t.expect_case{ rule = "device.battery", subject = "smoke-1", severity = "minor" }
end)

test("device.battery: a charged battery opens nothing", function(t)
    t.device{ id = "door-1", type = "door", grid = HOME }
    t.reading{ device = "door-1", open = true, battery = 87 }
    t.reading{ device = "door-1", open = true, battery = 21 }
    t.expect_no_case{ rule = "device.battery" }
end)

test("device.battery: a device without a battery figure is ignored", function(t)
    t.device{ id = "temp-1", type = "temperature", grid = HOME }
    t.reading{ device = "temp-1", temp = 22.0, humidity = 45.0 }
    t.expect_no_case{ rule = "device.battery" }
end)

test("device.battery: cleared at 30 % or more, not between 20 and 30", function(t)
    t.device{ id = "door-1", type = "door", grid = HOME }
    t.reading{ device = "door-1", battery = 15 }
    t.advance("1d")
    t.reading{ device = "door-1", battery = 29 }
    t.expect_no_case{ rule = "device.battery", subject = "door-1", cleared = true }
    t.advance("1d")
    t.reading{ device = "door-1", battery = 100 }
    t.expect_cleared{ rule = "device.battery", subject = "door-1" }
end)

test("device.battery: a case left open before a restart is cleared by a charged battery", function(t)
    t.device{ id = "door-1", type = "door", grid = HOME }
    t.left_open{ rule = "device.battery", subject = "door-1" }
    t.reading{ device = "door-1", battery = 25 }
    t.expect_no_case{ rule = "device.battery", subject = "door-1", cleared = true }
    t.reading{ device = "door-1", battery = 95 }
    t.expect_cleared{ rule = "device.battery", subject = "door-1" }
end)

-- device.silent -------------------------------------------------------------------
--
-- Smoke detectors report every 12 hours: silent after 24 hours.

test("device.silent: twice the heartbeat without a message opens one case", function(t)
    t.device{ id = "smoke-1", type = "smoke", heartbeat = "12h", grid = HOME }
    t.reading{ device = "smoke-1", smoke = 0.01, temp = 22.0, battery = 90 }
    t.advance("23h")
    t.expect_no_case{ rule = "device.silent" }
    t.advance("2h")                      -- 25 h of silence
    t.expect_case{ rule = "device.silent", subject = "smoke-1", category = "device.silent",
                   severity = "minor", role = "manager", title = "设备失联 smoke-1", count = 1 }
    t.advance("3d")                      -- still silent: still the one case, reported once
    t.expect_case{ rule = "device.silent", subject = "smoke-1", count = 1 }
end)

test("device.silent: a reading before twice the heartbeat prevents it", function(t)
    t.device{ id = "smoke-1", type = "smoke", heartbeat = "12h", grid = HOME }
    t.reading{ device = "smoke-1", smoke = 0.01, battery = 90 }
    t.advance("20h")
    t.reading{ device = "smoke-1", smoke = 0.02, battery = 90 }
    t.advance("20h")
    t.reading{ device = "smoke-1", smoke = 0.01, battery = 90 }
    t.advance("20h")
    t.expect_no_case{ rule = "device.silent" }
end)

test("device.silent: the heartbeat is per device", function(t)
    t.device{ id = "cam-1", type = "camera", heartbeat = "5m", grid = MALL }
    t.device{ id = "smoke-1", type = "smoke", heartbeat = "12h", grid = MALL }
    t.reading{ device = "cam-1", people = 30, density = 0.2 }
    t.reading{ device = "smoke-1", smoke = 0.01, battery = 90 }
    t.advance("9m")
    t.expect_no_case{ rule = "device.silent" }
    t.advance("2m")
    t.expect_case{ rule = "device.silent", subject = "cam-1", severity = "minor" }
    t.expect_no_case{ rule = "device.silent", subject = "smoke-1" }
end)

test("device.silent: cleared when the device is heard again", function(t)
    t.device{ id = "smoke-1", type = "smoke", heartbeat = "12h", grid = HOME }
    t.reading{ device = "smoke-1", smoke = 0.01, battery = 90 }
    t.advance("25h")
    t.expect_case{ rule = "device.silent", subject = "smoke-1" }
    t.reading{ device = "smoke-1", smoke = 0.01, battery = 90 }
    t.expect_cleared{ rule = "device.silent", subject = "smoke-1" }
end)

test("device.silent: an event also counts as hearing from the device", function(t)
    t.device{ id = "cam-1", type = "camera", heartbeat = "1h", grid = HOME }
    t.reading{ device = "cam-1", people = 3, density = 0.05 }
    t.advance("3h")
    t.expect_case{ rule = "device.silent", subject = "cam-1" }
    t.event{ device = "cam-1", kind = "event", event = "VCA_LOITER" }
    t.expect_cleared{ rule = "device.silent", subject = "cam-1" }
end)

test("device.silent: an offline status does not clear it", function(t)
    t.device{ id = "cam-1", type = "camera", heartbeat = "1h", grid = HOME }
    t.reading{ device = "cam-1", people = 3, density = 0.05 }
    t.advance("3h")
    t.event{ device = "cam-1", kind = "status", status = "offline" }
    t.expect_no_case{ rule = "device.silent", subject = "cam-1", cleared = true }
    t.event{ device = "cam-1", kind = "status", status = "online" }
    t.expect_cleared{ rule = "device.silent", subject = "cam-1" }
end)

-- device.offline ------------------------------------------------------------------

test("device.offline: status offline opens a minor case for the manager", function(t)
    t.device{ id = "cam-1", type = "camera", grid = HOME }
    t.event{ device = "cam-1", kind = "status", status = "offline" }
    t.expect_case{ rule = "device.offline", subject = "cam-1", category = "device.offline",
                   severity = "minor", role = "manager", title = "设备离线 cam-1" }
end)

test("device.offline: status online clears it", function(t)
    t.device{ id = "cam-1", type = "camera", grid = HOME }
    t.event{ device = "cam-1", kind = "status", status = "offline" }
    t.advance("10m")
    t.event{ device = "cam-1", kind = "status", status = "online" }
    t.expect_cleared{ rule = "device.offline", subject = "cam-1" }
end)

test("device.offline: a reading after offline clears it too", function(t)
    t.device{ id = "smoke-1", type = "smoke", grid = HOME }
    t.event{ device = "smoke-1", kind = "status", status = "offline" }
    t.advance("10m")
    t.reading{ device = "smoke-1", smoke = 0.01, battery = 90 }
    t.expect_cleared{ rule = "device.offline", subject = "smoke-1" }
end)

test("device.offline: online, readings and events open nothing", function(t)
    t.device{ id = "cam-1", type = "camera", grid = HOME }
    t.event{ device = "cam-1", kind = "status", status = "online" }
    t.reading{ device = "cam-1", people = 3, density = 0.05 }
    t.event{ device = "cam-1", kind = "event", event = "VCA_LOITER" }
    t.expect_no_case{ rule = "device.offline" }
end)

-- After a restart ------------------------------------------------------------------
--
-- Cases the store holds open when the gateway starts are cleared by the
-- device's first message, as they would have been without the restart.

test("device.silent and device.offline: cases left open are cleared by the first reading", function(t)
    t.device{ id = "smoke-1", type = "smoke", heartbeat = "12h", grid = HOME }
    t.device{ id = "smoke-2", type = "smoke", heartbeat = "12h", grid = HOME }
    t.left_open{ rule = "device.silent", subject = "smoke-1" }
    t.left_open{ rule = "device.offline", subject = "smoke-1" }
    t.left_open{ rule = "device.offline", subject = "smoke-2" }
    t.reading{ device = "smoke-1", smoke = 0.01, temp = 22.0, battery = 90 }
    t.expect_cleared{ rule = "device.silent", subject = "smoke-1" }
    t.expect_cleared{ rule = "device.offline", subject = "smoke-1" }
    t.expect_no_case{ rule = "device.offline", subject = "smoke-2", cleared = true }
    t.event{ device = "smoke-2", kind = "status", status = "online" }
    t.expect_cleared{ rule = "device.offline", subject = "smoke-2" }
end)
