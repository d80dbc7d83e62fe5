// Node-RED settings for simulators/bench.sh --nodered: the peer gateway of
// issue 7's benchmark. Loopback only, no editor and no admin API, the
// user directory and flow file where bench.sh says (a temp dir), nothing
// fetched from the network.
//
// The environment (set by bench.sh):
//   NODERED_PORT     the HTTP port Node-RED insists on opening (127.0.0.1)
//   NODERED_USERDIR  its user directory, a temp dir of the run
//   NODERED_FLOWS    the flow file (flows.json of this directory)
//   NODERED_DEVICES  the district's devices.csv, for the function's lookup
//   MQTT_PORT, INFLUX_PORT, NODERED_DB   read by the flow itself (${...})
"use strict";
const fs = require("fs");

// devices.csv (device_id,type,grid_id,lat,lon,label) into id -> the tags
// gridgate puts on a reading: its type (the measurement), grid, community
// and street (the grid code's first 12 and 9 digits, DESIGN.md). Devices
// with only lat/lon get no grid here: gridgate places them in a grid, a
// flow would need the district's polygons for that.
function loadDevices(file) {
    const devices = {};
    if (!file)
        return devices;
    const lines = fs.readFileSync(file, "utf8").split("\n");
    for (let i = 1; i < lines.length; i++) {
        const cols = lines[i].split(",");
        if (cols.length < 3 || !cols[0])
            continue;
        const grid = cols[2];
        devices[cols[0]] = {
            type: cols[1],
            grid: grid,
            community: grid.length === 15 ? grid.slice(0, 12) : "",
            street: grid.length === 15 ? grid.slice(0, 9) : "",
        };
    }
    return devices;
}

module.exports = {
    uiHost: "127.0.0.1",
    uiPort: Number(process.env.NODERED_PORT || 1880),
    httpAdminRoot: false, // no editor, no admin API
    httpNodeRoot: false,
    userDir: process.env.NODERED_USERDIR,
    flowFile: process.env.NODERED_FLOWS,
    credentialSecret: false,
    telemetry: { enabled: false },
    diagnostics: { enabled: false },
    externalModules: {
        autoInstall: false,
        palette: { allowInstall: false },
        modules: { allowInstall: false },
    },
    functionExternalModules: false,
    functionGlobalContext: { devices: loadDevices(process.env.NODERED_DEVICES) },
    // info: bench.sh waits for "Connected to broker"; nothing is logged per message.
    logging: { console: { level: "info", metrics: false, audit: false } },
};
