/*
 * profile.c: the device signal models behind profile.h (ev, meter, industrial).
 *
 * Every device owns a xoshiro256** generator seeded with splitmix64 from (profile, seed,
 * device_index); the models use only + - * / and sqrt (all correctly rounded by IEEE 754) and
 * their own sin/cos polynomials, so a run is bit-identical across machines. Each model advances
 * its state in sub-steps of at most TERN_PROFILE_SUBSTEP_MS and then derives the outputs, which
 * are rounded to the metric's decimals at the very end.
 */
#include "sim/profile.h"

#include "base/alloc.h"
#include "base/error.h"

#include <stdio.h>
#include <string.h>

#define SUBSTEP_MS 10000
#define PI 3.14159265358979323846
#define TWO_PI (2.0 * PI)
#define DEG (PI / 180.0)

enum profile_kind { KIND_EV, KIND_METER, KIND_INDUSTRIAL };

typedef struct metric_def {
    const char *name;
    const char *unit;
    int decimals;
} metric_def;

struct tern_profile {
    enum profile_kind kind;
    uint64_t seed;
    const metric_def *metrics;
    size_t n_metrics;
};

/* ---- deterministic randomness and math (no libc rand, no libm) ---- */

typedef struct rng {
    uint64_t s[4];
} rng;

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(rng *r)
{
    uint64_t result = rotl(r->s[1] * 5, 7) * 9;
    uint64_t t = r->s[1] << 17;
    r->s[2] ^= r->s[0];
    r->s[3] ^= r->s[1];
    r->s[1] ^= r->s[2];
    r->s[0] ^= r->s[3];
    r->s[2] ^= t;
    r->s[3] = rotl(r->s[3], 45);
    return result;
}

static void rng_seed(rng *r, uint64_t seed, uint64_t device_index, uint64_t salt)
{
    uint64_t x = seed ^ (device_index * 0xd1b54a32d192ed03ULL) ^ (salt * 0x8cb92ba72f3d8dd7ULL);
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

/* u01 returns a uniform double in [0, 1). */
static double u01(rng *r)
{
    return (double)(rng_next(r) >> 11) * 0x1.0p-53;
}

static double uniform(rng *r, double lo, double hi)
{
    return lo + (hi - lo) * u01(r);
}

/* pick returns a uniform integer in [0, n). */
static uint32_t pick(rng *r, uint32_t n)
{
    return (uint32_t)(((rng_next(r) >> 32) * (uint64_t)n) >> 32);
}

/* gauss returns an approximately standard normal value (Irwin-Hall of 4 uniforms, scaled). */
static double gauss(rng *r)
{
    double s = u01(r) + u01(r) + u01(r) + u01(r) - 2.0;
    return s * 1.7320508075688772;
}

static double clampd(double x, double lo, double hi)
{
    return x < lo ? lo : (x > hi ? hi : x);
}

static double absd(double x)
{
    return x < 0 ? -x : x;
}

static double floord(double x)
{
    double i = (double)(int64_t)x;
    return i > x ? i - 1.0 : i;
}

/* sqrtd is Newton's method from a fixed start, so it needs no libm and is identical anywhere. */
static double sqrtd(double x)
{
    if (!(x > 0))
        return 0;
    double g = x > 1 ? x : 1;
    for (int i = 0; i < 64; i++) {
        double n = 0.5 * (g + x / g);
        if (n >= g)
            break;
        g = n;
    }
    return g;
}

/* sind: sine from a Taylor polynomial after reduction to [-pi/2, pi/2] (error < 1e-9). */
static double sind(double x)
{
    x = x - TWO_PI * floord((x + PI) / TWO_PI); /* [-pi, pi) */
    if (x > PI / 2)
        x = PI - x;
    else if (x < -PI / 2)
        x = -PI - x;
    double x2 = x * x;
    return x
        * (1
            - x2 / 6
                * (1 - x2 / 20 * (1 - x2 / 42 * (1 - x2 / 72 * (1 - x2 / 110 * (1 - x2 / 156))))));
}

static double cosd(double x)
{
    return sind(x + PI / 2);
}

static const double k_pow10[7] = { 1, 10, 100, 1000, 10000, 100000, 1000000 };

/* round_to rounds x half away from zero to d decimals (d < 0: to an integer). */
static double round_to(double x, int d)
{
    double p = k_pow10[d < 0 ? 0 : d];
    double k = x * p;
    double r = (double)(int64_t)(k + (k >= 0 ? 0.5 : -0.5));
    if (r == 0)
        return 0.0; /* never -0.0 */
    return r / p;
}

/* ---- metric tables ---- */

enum {
    EV_SOC,
    EV_SPEED,
    EV_CURRENT,
    EV_POWER,
    EV_VOLTAGE,
    EV_CELL_TEMP,
    EV_PACK_TEMP,
    EV_MOTOR_TEMP,
    EV_CABIN_TEMP,
    EV_AMBIENT_TEMP,
    EV_LAT,
    EV_LON,
    EV_HEADING,
    EV_ODOMETER,
    EV_TIRE_PRESSURE,
    EV_THROTTLE,
    EV_CHARGE_POWER,
    EV_UPTIME,
    EV_TRIP_COUNT,
    EV_MSG_SEQ,
    EV_N
};

static const metric_def k_ev_metrics[EV_N] = {
    [EV_SOC] = { "soc", "%", 1 },
    [EV_SPEED] = { "speed", "km/h", 1 },
    [EV_CURRENT] = { "current", "A", 1 },
    [EV_POWER] = { "power", "kW", 2 },
    [EV_VOLTAGE] = { "voltage", "V", 1 },
    [EV_CELL_TEMP] = { "cell_temp", "Cel", 1 },
    [EV_PACK_TEMP] = { "pack_temp", "Cel", 1 },
    [EV_MOTOR_TEMP] = { "motor_temp", "Cel", 1 },
    [EV_CABIN_TEMP] = { "cabin_temp", "Cel", 1 },
    [EV_AMBIENT_TEMP] = { "ambient_temp", "Cel", 1 },
    [EV_LAT] = { "lat", "deg", 6 },
    [EV_LON] = { "lon", "deg", 6 },
    [EV_HEADING] = { "heading", "deg", 1 },
    [EV_ODOMETER] = { "odometer", "km", 2 },
    [EV_TIRE_PRESSURE] = { "tire_pressure", "bar", 2 },
    [EV_THROTTLE] = { "throttle", "%", 0 },
    [EV_CHARGE_POWER] = { "charge_power", "kW", 1 },
    [EV_UPTIME] = { "uptime_s", "s", -1 },
    [EV_TRIP_COUNT] = { "trip_count", "1", -1 },
    [EV_MSG_SEQ] = { "msg_seq", "1", -1 },
};

enum {
    MT_VOLTAGE,
    MT_CURRENT,
    MT_POWER_FACTOR,
    MT_ACTIVE_POWER,
    MT_REACTIVE_POWER,
    MT_FREQUENCY,
    MT_ENERGY,
    MT_THD,
    MT_TEMP,
    MT_MSG_SEQ,
    MT_N
};

static const metric_def k_meter_metrics[MT_N] = {
    [MT_VOLTAGE] = { "voltage", "V", 1 },
    [MT_CURRENT] = { "current", "A", 2 },
    [MT_POWER_FACTOR] = { "power_factor", "1", 2 },
    [MT_ACTIVE_POWER] = { "active_power", "kW", 3 },
    [MT_REACTIVE_POWER] = { "reactive_power", "kvar", 3 },
    [MT_FREQUENCY] = { "frequency", "Hz", 3 },
    [MT_ENERGY] = { "energy_import", "kWh", 3 },
    [MT_THD] = { "voltage_thd", "%", 1 },
    [MT_TEMP] = { "meter_temp", "Cel", 1 },
    [MT_MSG_SEQ] = { "msg_seq", "1", -1 },
};

enum {
    IN_RPM,
    IN_VIBRATION,
    IN_BEARING_TEMP,
    IN_MOTOR_TEMP,
    IN_INLET_PRESSURE,
    IN_OUTLET_PRESSURE,
    IN_FLOW,
    IN_POWER,
    IN_RUN_SECONDS,
    IN_START_COUNT,
    IN_N
};

static const metric_def k_industrial_metrics[IN_N] = {
    [IN_RPM] = { "rpm", "1/min", 0 },
    [IN_VIBRATION] = { "vibration_rms", "mm/s", 2 },
    [IN_BEARING_TEMP] = { "bearing_temp", "Cel", 1 },
    [IN_MOTOR_TEMP] = { "motor_temp", "Cel", 1 },
    [IN_INLET_PRESSURE] = { "inlet_pressure", "bar", 2 },
    [IN_OUTLET_PRESSURE] = { "outlet_pressure", "bar", 2 },
    [IN_FLOW] = { "flow", "m3/h", 1 },
    [IN_POWER] = { "power", "kW", 1 },
    [IN_RUN_SECONDS] = { "run_seconds", "s", -1 },
    [IN_START_COUNT] = { "start_count", "1", -1 },
};

/* ---- tags: fleets live in one region, models vary per device ---- */

typedef struct region_def {
    const char *name;
    double lat, lon;         /* the fleet's depot */
    double temp_mean;        /* yearly mean ambient, Celsius */
    double temp_year_amp;    /* half the summer-winter swing */
    double temp_day_amp;     /* half the day-night swing */
    double utc_offset_hours; /* local solar time offset */
} region_def;

static const region_def k_regions[] = {
    { "eu-west", 48.8566, 2.3522, 12.0, 8.0, 5.0, 1 },
    { "eu-north", 59.3293, 18.0686, 7.0, 10.0, 4.0, 1 },
    { "eu-south", 40.4168, -3.7038, 15.0, 9.0, 7.0, 0 },
    { "us-east", 40.7128, -74.0060, 13.0, 12.0, 5.0, -5 },
    { "us-west", 37.7749, -122.4194, 14.5, 3.0, 4.0, -8 },
    { "ap-east", 35.6762, 139.6503, 16.0, 10.0, 4.0, 9 },
};
#define N_REGIONS (sizeof k_regions / sizeof k_regions[0])
#define N_FLEETS 24

typedef struct ev_model_def {
    const char *name;
    double capacity_kwh;
    double mass_kg;
    double cda_m2; /* drag coefficient x frontal area */
    double max_power_kw;
    double cells_series;
    double max_dc_kw;
    double tire_bar; /* cold placard pressure */
} ev_model_def;

static const ev_model_def k_ev_models[] = {
    { "compact-40", 40.0, 1500, 0.62, 100, 96, 50, 2.4 },
    { "sedan-75", 75.0, 1850, 0.52, 200, 96, 150, 2.6 },
    { "suv-90", 90.0, 2300, 0.80, 250, 108, 150, 2.7 },
    { "van-60", 60.0, 2100, 0.98, 120, 96, 80, 3.2 },
};
#define N_EV_MODELS (sizeof k_ev_models / sizeof k_ev_models[0])

static const char *const k_meter_models[] = { "sm-1ph-a", "sm-1ph-b", "sm-1ph-c" };
static const char *const k_industrial_models[] = { "pump-15kw", "pump-30kw", "fan-22kw" };

typedef struct device_tags {
    uint32_t fleet;
    uint32_t region;
    uint32_t model;
} device_tags;

static device_tags tags_of(const tern_profile *p, uint64_t device_index)
{
    rng r;
    rng_seed(&r, p->seed, device_index, 0x7a95ULL + (uint64_t)p->kind);
    device_tags t;
    t.fleet = pick(&r, N_FLEETS);
    t.region = t.fleet % (uint32_t)N_REGIONS;
    uint32_t n_models = p->kind == KIND_EV ? (uint32_t)N_EV_MODELS : 3;
    t.model = pick(&r, n_models);
    return t;
}

/* ambient returns the region's ambient temperature at ts_ms: yearly and daily cycles. */
static double ambient_at(const region_def *reg, int64_t ts_ms)
{
    double days = (double)ts_ms / 86400000.0;
    double year_phase = (days - 10.0 - 365.25 * floord((days - 10.0) / 365.25)) / 365.25;
    double local_h = ((double)(ts_ms % 86400000) / 3600000.0) + reg->utc_offset_hours;
    double sign = reg->lat >= 0 ? 1.0 : -1.0;
    double yearly = reg->temp_mean - sign * reg->temp_year_amp * cosd(TWO_PI * year_phase);
    double daily = -reg->temp_day_amp * cosd(TWO_PI * (local_h - 3.0) / 24.0); /* low at 03:00 */
    return yearly + daily;
}

/* local_hour returns the hour of day (0..24) in the region at ts_ms. */
static double local_hour(const region_def *reg, int64_t ts_ms)
{
    double h = (double)(ts_ms % 86400000) / 3600000.0 + reg->utc_offset_hours;
    return h - 24.0 * floord(h / 24.0);
}

/* ---- the EV model ---- */

enum ev_mode { EV_PARK, EV_DRIVE, EV_CHARGE };

typedef struct ev_state {
    const ev_model_def *model;
    const region_def *region;
    enum ev_mode mode;
    double mode_left_s; /* park/drive: time until the next decision */
    double stopping;    /* 1 while a trip is ending */
    double v, a;        /* m/s, m/s^2 */
    double target_v, target_left_s;
    int highway;
    double road_left_s;
    double soc; /* 0..1 */
    double soc_target;
    double charge_kw_max;
    double pack_temp, motor_temp, cabin_temp, tire_temp, amb_offset, cell_offset;
    double lat, lon, heading, turn_rate, home_lat, home_lon, cos_home_lat;
    double odo_km;
    double tire_p0;
    /* outputs of the last sub-step */
    double p_batt_w, p_wheel_w, charge_kw, current_a, voltage_v, ocv_v;
    int64_t boot_ts_ms;
    uint64_t trips;
} ev_state;

typedef struct appliance {
    double kw, kvar;  /* draw while on */
    double on_s;      /* remaining on time, 0 = off */
    double mean_on_s; /* typical run */
    double rate_h;    /* starts per hour at the daily peak */
    int cyclic;       /* fridge-like: alternates on/off on its own */
    double off_s;     /* cyclic: remaining off time */
} appliance;

#define METER_APPLIANCES 6

typedef struct meter_state {
    const region_def *region;
    double base_kw;
    appliance app[METER_APPLIANCES];
    double grid_v, grid_f, thd;
    double energy_kwh;
    double temp;
    double p_kw, q_kvar;
} meter_state;

typedef struct industrial_state {
    const region_def *region;
    double rated_kw, rated_rpm;
    int running;
    double mode_left_s;
    double rpm, load, wear;
    double bearing_temp, motor_temp;
    double inlet_bar, outlet_bar, flow, power_kw;
    double run_s;
    uint64_t starts;
} industrial_state;

struct tern_sim_device {
    enum profile_kind kind;
    uint64_t device_index;
    rng r;
    int started;
    int64_t last_ts_ms;
    uint64_t seq;
    union {
        ev_state ev;
        meter_state meter;
        industrial_state ind;
    } u;
};

static void ev_init(const tern_profile *p, tern_sim_device *d)
{
    ev_state *s = &d->u.ev;
    device_tags t = tags_of(p, d->device_index);
    rng *r = &d->r;
    s->model = &k_ev_models[t.model];
    s->region = &k_regions[t.region];
    double u = u01(r);
    s->mode = u < 0.45 ? EV_DRIVE : (u < 0.85 ? EV_PARK : EV_CHARGE);
    s->mode_left_s = s->mode == EV_DRIVE ? uniform(r, 300, 2400) : uniform(r, 300, 7200);
    s->soc = uniform(r, 0.25, 0.95);
    s->soc_target = uniform(r, 0.8, 1.0);
    s->charge_kw_max = u01(r) < 0.7 ? (u01(r) < 0.5 ? 7.4 : 11.0) : s->model->max_dc_kw;
    s->highway = u01(r) < 0.3;
    s->road_left_s = uniform(r, 120, 1200);
    s->target_v = s->mode == EV_DRIVE ? (s->highway ? uniform(r, 25, 34) : uniform(r, 8, 15)) : 0;
    s->v = s->target_v * uniform(r, 0.7, 1.0);
    s->target_left_s = uniform(r, 20, 120);
    s->amb_offset = gauss(r) * 1.5;
    s->cell_offset = uniform(r, 0.2, 1.5);
    s->home_lat = s->region->lat + uniform(r, -0.15, 0.15);
    s->home_lon = s->region->lon + uniform(r, -0.2, 0.2);
    s->cos_home_lat = cosd(s->home_lat * DEG);
    s->lat = s->home_lat + uniform(r, -0.05, 0.05);
    s->lon = s->home_lon + uniform(r, -0.07, 0.07);
    s->heading = uniform(r, 0, TWO_PI);
    s->odo_km = uniform(r, 3000, 90000);
    s->tire_p0 = s->model->tire_bar + uniform(r, -0.15, 0.05);
    s->trips = 50 + pick(r, 5000);
    s->boot_ts_ms = -(int64_t)(uniform(r, 600, 30 * 86400.0) * 1000.0);
}

/* ev_first sets the temperatures from the ambient at the device's first timestamp. */
static void ev_first(tern_sim_device *d, int64_t ts_ms)
{
    ev_state *s = &d->u.ev;
    double amb = ambient_at(s->region, ts_ms) + s->amb_offset;
    s->pack_temp = amb + (s->mode == EV_PARK ? uniform(&d->r, 0, 4) : uniform(&d->r, 6, 14));
    s->motor_temp = amb + (s->mode == EV_DRIVE ? uniform(&d->r, 15, 35) : uniform(&d->r, 0, 5));
    s->cabin_temp = s->mode == EV_DRIVE ? 21.0 + gauss(&d->r) : amb + uniform(&d->r, 0, 3);
    s->tire_temp = amb + (s->mode == EV_DRIVE ? 12 : 1);
    s->boot_ts_ms += ts_ms;
}

static void ev_start_trip(tern_sim_device *d)
{
    ev_state *s = &d->u.ev;
    s->mode = EV_DRIVE;
    s->mode_left_s = uniform(&d->r, 300, 3000);
    s->stopping = 0;
    s->trips++;
    s->highway = u01(&d->r) < 0.35;
    s->road_left_s = uniform(&d->r, 120, 1200);
    s->target_left_s = 0;
}

static void ev_park(tern_sim_device *d)
{
    ev_state *s = &d->u.ev;
    s->v = 0;
    s->a = 0;
    s->target_v = 0;
    if (s->soc < 0.3 || (s->soc < 0.6 && u01(&d->r) < 0.25)) {
        s->mode = EV_CHARGE;
        s->soc_target = uniform(&d->r, 0.8, 1.0);
        s->charge_kw_max = u01(&d->r) < 0.6 ? (u01(&d->r) < 0.5 ? 7.4 : 11.0) : s->model->max_dc_kw;
    } else {
        s->mode = EV_PARK;
        s->mode_left_s
            = u01(&d->r) < 0.3 ? uniform(&d->r, 3600, 5 * 3600.0) : uniform(&d->r, 120, 2400);
    }
}

static void ev_substep(tern_sim_device *d, int64_t ts_ms, double dt)
{
    ev_state *s = &d->u.ev;
    rng *r = &d->r;
    const ev_model_def *m = s->model;
    double amb = ambient_at(s->region, ts_ms) + s->amb_offset;
    s->amb_offset = clampd(s->amb_offset + gauss(r) * 0.02 * dt / 10.0, -4, 4);

    double p_wheel = 0, p_aux = 250.0, charge_kw = 0, batt_in_kw = 0;
    int hvac = s->mode != EV_PARK;
    double hvac_w = hvac ? clampd(absd(21.0 - amb) * 120.0, 0, 3500) : 0;
    p_aux += hvac_w;

    if (s->mode == EV_DRIVE) {
        s->mode_left_s -= dt;
        if (s->mode_left_s <= 0 || s->soc < 0.07)
            s->stopping = 1;
        s->road_left_s -= dt;
        if (s->road_left_s <= 0) {
            s->highway = u01(r) < (s->highway ? 0.5 : 0.3);
            s->road_left_s = uniform(r, 120, 1500);
            s->target_left_s = 0;
        }
        s->target_left_s -= dt;
        if (s->stopping != 0.0) {
            s->target_v = 0;
        } else if (s->target_left_s <= 0) {
            if (!s->highway && u01(r) < 0.2) {
                s->target_v = 0; /* a red light or a junction */
                s->target_left_s = uniform(r, 15, 70);
            } else {
                s->target_v = s->highway ? uniform(r, 22, 35) : uniform(r, 7, 15);
                s->target_left_s = uniform(r, 30, 240);
            }
        }
        double a_des = (s->target_v - s->v) * 0.12 + gauss(r) * 0.25;
        a_des = clampd(a_des, -3.0, 2.2);
        double k = clampd(dt / 4.0, 0, 1);
        s->a += (a_des - s->a) * k;
        double v0 = s->v;
        s->v = s->v + s->a * dt;
        if (s->v <= 0.3 && s->target_v == 0) {
            s->v = 0;
            s->a = 0;
        }
        s->v = clampd(s->v, 0, 45);
        double v_mid = 0.5 * (v0 + s->v);
        double a_eff = (s->v - v0) / (dt > 0 ? dt : 1);
        double force = m->mass_kg * a_eff + 0.6 * m->cda_m2 * v_mid * v_mid
            + 0.011 * m->mass_kg * 9.81 * (v_mid > 0 ? 1 : 0);
        p_wheel = clampd(force * v_mid, -80000.0, m->max_power_kw * 1000.0);

        /* heading: a smooth random turn rate, pulled home when the car strays too far */
        s->turn_rate += (gauss(r) * 0.02 - s->turn_rate * 0.2) * clampd(dt / 5.0, 0, 1);
        s->turn_rate = clampd(s->turn_rate, -0.15, 0.15);
        double dy = (s->home_lat - s->lat) * 111320.0;
        double dx = (s->home_lon - s->lon) * 111320.0 * s->cos_home_lat;
        if (dx * dx + dy * dy > 20000.0 * 20000.0) {
            double hx = sind(s->heading), hy = cosd(s->heading);
            double cross = hx * dy - hy * dx; /* > 0: home is to the left */
            s->turn_rate = cross > 0 ? -0.05 : 0.05;
        }
        if (v_mid > 0.5) {
            s->heading += s->turn_rate * dt * clampd(v_mid / 10.0, 0.2, 1.0);
            s->heading -= TWO_PI * floord(s->heading / TWO_PI);
        }
        double dist_m = v_mid * dt;
        s->lat += dist_m * cosd(s->heading) / 111320.0;
        s->lon += dist_m * sind(s->heading) / (111320.0 * s->cos_home_lat);
        s->odo_km += dist_m / 1000.0;
        if (s->stopping != 0.0 && s->v == 0)
            ev_park(d);
    } else if (s->mode == EV_PARK) {
        s->v = 0;
        s->a = 0;
        p_aux = 40.0; /* telematics and BMS standby */
        s->mode_left_s -= dt;
        if (s->mode_left_s <= 0) {
            if (s->soc < 0.2)
                ev_park(d); /* decide again: goes charging */
            else
                ev_start_trip(d);
        }
    } else {
        s->v = 0;
        s->a = 0;
        double taper = s->soc < 0.8 ? 1.0 : clampd((1.0 - s->soc) / 0.2, 0.08, 1.0);
        if (s->pack_temp < 5)
            taper *= 0.4;
        batt_in_kw = s->charge_kw_max * taper;
        /* the charger feeds the pack and covers the car's own loads (HVAC, electronics) */
        charge_kw = batt_in_kw / 0.93 + p_aux / 1000.0;
        if (s->soc >= s->soc_target) {
            charge_kw = 0;
            batt_in_kw = 0;
            s->mode = EV_PARK;
            s->mode_left_s = uniform(r, 300, 4 * 3600.0);
        }
    }

    /* battery: power balance, voltage sag, SoC, heat */
    double p_batt = charge_kw > 0 ? -batt_in_kw * 1000.0
                                  : (p_wheel >= 0 ? p_wheel / 0.9 : p_wheel * 0.7) + p_aux;
    if (s->soc > 0.97 && p_batt < 0 && charge_kw == 0)
        p_batt = 0; /* regen is disabled on a full pack */
    double cell_v = 3.30 + 0.55 * s->soc + 0.30 * s->soc * s->soc;
    double ocv = cell_v * m->cells_series;
    double r_pack = 0.0011 * m->cells_series * clampd(1.0 + 0.02 * (25.0 - s->pack_temp), 0.7, 2.0);
    double disc = ocv * ocv - 4.0 * p_batt * r_pack;
    double v_term = 0.5 * (ocv + sqrtd(disc > 0 ? disc : 0));
    double current = p_batt / v_term;
    s->soc = clampd(s->soc - (ocv * current) * dt / (3600.0 * m->capacity_kwh * 1000.0), 0, 1);
    double heat_w = current * current * r_pack;
    double cool_w_per_k = 25.0 + (s->pack_temp > 32 ? 400.0 : 0.0);
    s->pack_temp += (heat_w - cool_w_per_k * (s->pack_temp - amb)) * dt / 350000.0;
    double motor_loss = absd(p_wheel) * 0.06;
    s->motor_temp += (motor_loss - 60.0 * (s->motor_temp - amb)) * dt / 40000.0;
    double cabin_goal = hvac
        ? 21.0
        : amb + (local_hour(s->region, ts_ms) > 9 && local_hour(s->region, ts_ms) < 17 ? 4.0 : 0.0);
    s->cabin_temp += (cabin_goal - s->cabin_temp) * clampd(dt / (hvac ? 400.0 : 2400.0), 0, 1);
    double tire_goal = amb + s->v * 3.6 * 0.12;
    s->tire_temp += (tire_goal - s->tire_temp) * clampd(dt / 900.0, 0, 1);
    s->tire_p0 -= dt * 0.02 / (30 * 86400.0); /* slow leak: 0.02 bar a month */

    s->p_wheel_w = p_wheel;
    s->p_batt_w = p_batt;
    s->charge_kw = charge_kw;
    s->current_a = current;
    s->voltage_v = v_term;
    s->ocv_v = ocv;
}

static void ev_outputs(tern_sim_device *d, int64_t ts_ms, double *out)
{
    ev_state *s = &d->u.ev;
    rng *r = &d->r;
    const ev_model_def *m = s->model;
    double amb = ambient_at(s->region, ts_ms) + s->amb_offset;
    double noise_i = s->mode == EV_PARK ? 0.15 : 0.6;
    double current = s->current_a + gauss(r) * noise_i;
    double volt = s->voltage_v + gauss(r) * (0.04 + 0.002 * absd(current));
    double speed_kmh = s->v * 3.6;
    if (speed_kmh > 0)
        speed_kmh = clampd(speed_kmh + gauss(r) * 0.15, 0.1, 200);
    double heading_deg = round_to(s->heading / DEG, 1);
    if (heading_deg >= 360.0)
        heading_deg = 0;
    out[EV_SOC] = round_to(s->soc * 100.0, 1);
    out[EV_SPEED] = s->mode == EV_DRIVE ? round_to(speed_kmh, 1) : 0.0;
    out[EV_CURRENT] = round_to(current, 1);
    out[EV_POWER] = round_to(volt * current / 1000.0, 2);
    out[EV_VOLTAGE] = round_to(volt, 1);
    out[EV_CELL_TEMP] = round_to(
        s->pack_temp + s->cell_offset + s->current_a * s->current_a * 0.00002 + gauss(r) * 0.05, 1);
    out[EV_PACK_TEMP] = round_to(s->pack_temp, 1);
    out[EV_MOTOR_TEMP] = round_to(s->motor_temp, 1);
    out[EV_CABIN_TEMP] = round_to(s->cabin_temp, 1);
    out[EV_AMBIENT_TEMP] = round_to(amb, 1);
    out[EV_LAT] = round_to(s->lat, 6);
    out[EV_LON] = round_to(s->lon, 6);
    out[EV_HEADING] = heading_deg;
    out[EV_ODOMETER] = round_to(s->odo_km, 2);
    out[EV_TIRE_PRESSURE]
        = round_to(s->tire_p0 * (273.15 + s->tire_temp) / (273.15 + 20.0) + gauss(r) * 0.004, 2);
    out[EV_THROTTLE] = s->mode == EV_DRIVE && s->p_wheel_w > 0
        ? round_to(clampd(s->p_wheel_w / (m->max_power_kw * 10.0), 0, 100), 0)
        : 0.0;
    out[EV_CHARGE_POWER] = round_to(s->charge_kw, 1);
    int64_t up_ms = ts_ms - s->boot_ts_ms;
    out[EV_UPTIME] = (double)(up_ms > 0 ? up_ms / 1000 : 0);
    out[EV_TRIP_COUNT] = (double)s->trips;
    out[EV_MSG_SEQ] = (double)d->seq;
}

/* ---- the smart meter model ---- */

static void meter_init(const tern_profile *p, tern_sim_device *d)
{
    meter_state *s = &d->u.meter;
    rng *r = &d->r;
    device_tags t = tags_of(p, d->device_index);
    s->region = &k_regions[t.region];
    s->base_kw = uniform(r, 0.08, 0.3);
    /* fridge, kettle, oven, washer, heat pump, EV charger */
    static const appliance proto[METER_APPLIANCES] = {
        { 0.12, 0.09, 0, 900, 0, 1, 1200 },
        { 2.2, 0.0, 0, 180, 0.6, 0, 0 },
        { 2.4, 0.05, 0, 2400, 0.15, 0, 0 },
        { 0.5, 0.35, 0, 5400, 0.08, 0, 0 },
        { 1.8, 0.9, 0, 1800, 0.4, 0, 0 },
        { 7.2, 0.3, 0, 10800, 0.03, 0, 0 },
    };
    for (int i = 0; i < METER_APPLIANCES; i++) {
        s->app[i] = proto[i];
        s->app[i].kw *= uniform(r, 0.85, 1.15);
        s->app[i].rate_h *= u01(r) < 0.8 ? uniform(r, 0.5, 1.5) : 0; /* not every home has each */
        if (s->app[i].cyclic)
            s->app[i].off_s = uniform(r, 0, 1800);
    }
    s->grid_v = uniform(r, 228, 236);
    s->grid_f = 50.0;
    s->thd = uniform(r, 1.5, 3.5);
    s->energy_kwh = uniform(r, 1000, 40000);
}

static void meter_first(tern_sim_device *d, int64_t ts_ms)
{
    meter_state *s = &d->u.meter;
    s->temp = ambient_at(s->region, ts_ms) * 0.3 + 15.0;
}

static void meter_substep(tern_sim_device *d, int64_t ts_ms, double dt)
{
    meter_state *s = &d->u.meter;
    rng *r = &d->r;
    double h = local_hour(s->region, ts_ms);
    /* occupancy: low at night, morning and evening peaks */
    double occ = 0.15 + 0.6 * (h > 6.5 && h < 9 ? 1 : 0) + 0.3 * (h >= 9 && h < 17 ? 1 : 0)
        + 0.9 * (h >= 17 && h < 22.5 ? 1 : 0);
    double p_kw = s->base_kw, q_kvar = s->base_kw * 0.2;
    for (int i = 0; i < METER_APPLIANCES; i++) {
        appliance *a = &s->app[i];
        if (a->cyclic) {
            if (a->on_s > 0) {
                a->on_s -= dt;
                if (a->on_s <= 0)
                    a->off_s = a->mean_on_s * uniform(r, 1.5, 2.5);
            } else {
                a->off_s -= dt;
                if (a->off_s <= 0)
                    a->on_s = a->mean_on_s * uniform(r, 0.8, 1.2);
            }
        } else if (a->on_s > 0) {
            a->on_s -= dt;
        } else if (u01(r) < a->rate_h * occ * dt / 3600.0) {
            a->on_s = a->mean_on_s * uniform(r, 0.5, 1.5);
        }
        if (a->on_s > 0) {
            p_kw += a->kw;
            q_kvar += a->kvar;
        }
    }
    s->grid_v = clampd(
        s->grid_v + gauss(r) * 0.15 * dt / 10.0 + (232.0 - s->grid_v) * 0.002 * dt, 216, 248);
    s->grid_f = clampd(
        s->grid_f + gauss(r) * 0.004 * dt / 10.0 + (50.0 - s->grid_f) * 0.01 * dt, 49.8, 50.2);
    s->thd = clampd(s->thd + gauss(r) * 0.02, 0.8, 6);
    s->energy_kwh += p_kw * dt / 3600.0;
    double amb = ambient_at(s->region, ts_ms);
    s->temp += ((amb * 0.3 + 15.0 + p_kw * 0.8) - s->temp) * clampd(dt / 1800.0, 0, 1);
    s->p_kw = p_kw;
    s->q_kvar = q_kvar;
}

static void meter_outputs(tern_sim_device *d, double *out)
{
    meter_state *s = &d->u.meter;
    rng *r = &d->r;
    double v = s->grid_v - s->p_kw * 0.35 + gauss(r) * 0.1;
    double p = s->p_kw * (1.0 + gauss(r) * 0.003);
    double q = s->q_kvar * (1.0 + gauss(r) * 0.003);
    double va = sqrtd(p * p + q * q);
    out[MT_VOLTAGE] = round_to(v, 1);
    out[MT_CURRENT] = round_to(va * 1000.0 / v, 2);
    out[MT_POWER_FACTOR] = round_to(va > 0 ? p / va : 1.0, 2);
    out[MT_ACTIVE_POWER] = round_to(p, 3);
    out[MT_REACTIVE_POWER] = round_to(q, 3);
    out[MT_FREQUENCY] = round_to(s->grid_f, 3);
    out[MT_ENERGY] = round_to(s->energy_kwh, 3);
    out[MT_THD] = round_to(s->thd, 1);
    out[MT_TEMP] = round_to(s->temp, 1);
    out[MT_MSG_SEQ] = (double)d->seq;
}

/* ---- the industrial pump model ---- */

static void industrial_init(const tern_profile *p, tern_sim_device *d)
{
    industrial_state *s = &d->u.ind;
    rng *r = &d->r;
    device_tags t = tags_of(p, d->device_index);
    static const double rated_kw[3] = { 15, 30, 22 };
    static const double rated_rpm[3] = { 2950, 1480, 980 };
    s->region = &k_regions[t.region];
    s->rated_kw = rated_kw[t.model];
    s->rated_rpm = rated_rpm[t.model];
    s->running = u01(r) < 0.75;
    s->mode_left_s = uniform(r, 600, 4 * 3600.0);
    s->load = uniform(r, 0.6, 0.9);
    s->wear = uniform(r, 0, 0.5);
    s->rpm = s->running ? s->rated_rpm * (1.0 - 0.02 * s->load) : 0;
    s->inlet_bar = uniform(r, 0.8, 1.5);
    s->run_s = uniform(r, 1e5, 5e7);
    s->starts = 100 + pick(r, 20000);
}

static void industrial_first(tern_sim_device *d, int64_t ts_ms)
{
    industrial_state *s = &d->u.ind;
    double amb = ambient_at(s->region, ts_ms) * 0.4 + 14.0; /* indoors */
    s->bearing_temp = amb + (s->running ? 25 : 2);
    s->motor_temp = amb + (s->running ? 35 : 3);
}

static void industrial_substep(tern_sim_device *d, int64_t ts_ms, double dt)
{
    industrial_state *s = &d->u.ind;
    rng *r = &d->r;
    double amb = ambient_at(s->region, ts_ms) * 0.4 + 14.0;
    s->mode_left_s -= dt;
    if (s->mode_left_s <= 0) {
        s->running = !s->running;
        if (s->running)
            s->starts++;
        s->mode_left_s = s->running ? uniform(r, 1800, 8 * 3600.0) : uniform(r, 300, 3600);
    }
    s->load
        = clampd(s->load + gauss(r) * 0.01 * dt / 10.0 + (0.75 - s->load) * 0.001 * dt, 0.3, 1.05);
    double rpm_goal = s->running ? s->rated_rpm * (1.0 - 0.025 * s->load) : 0;
    s->rpm += (rpm_goal - s->rpm) * clampd(dt / 8.0, 0, 1);
    double frac = s->rpm / s->rated_rpm;
    s->power_kw = s->rated_kw * s->load * frac * frac * frac;
    s->flow = 120.0 * s->rated_kw / 30.0 * frac * s->load;
    s->outlet_bar = s->inlet_bar + 6.0 * frac * frac * (1.1 - 0.2 * s->load);
    s->inlet_bar = clampd(s->inlet_bar + gauss(r) * 0.003, 0.5, 2.0);
    s->wear += dt * 1e-8;
    double heat = s->running ? 1.0 : 0.0;
    s->bearing_temp += ((amb + 25.0 * heat * frac + 10.0 * s->wear) - s->bearing_temp)
        * clampd(dt / 1500.0, 0, 1);
    s->motor_temp += ((amb + 40.0 * heat * s->load) - s->motor_temp) * clampd(dt / 1200.0, 0, 1);
    if (s->running)
        s->run_s += dt;
}

static void industrial_outputs(tern_sim_device *d, double *out)
{
    industrial_state *s = &d->u.ind;
    rng *r = &d->r;
    double frac = s->rpm / s->rated_rpm;
    double running = s->rpm > 1 ? 1.0 : 0.0;
    out[IN_RPM] = round_to(s->rpm + running * gauss(r) * 1.5, 0);
    out[IN_VIBRATION] = round_to(
        running * (1.2 + 2.5 * s->wear) * frac * frac + absd(gauss(r)) * 0.05 * running, 2);
    out[IN_BEARING_TEMP] = round_to(s->bearing_temp + gauss(r) * 0.05, 1);
    out[IN_MOTOR_TEMP] = round_to(s->motor_temp + gauss(r) * 0.05, 1);
    out[IN_INLET_PRESSURE] = round_to(s->inlet_bar + gauss(r) * 0.005, 2);
    out[IN_OUTLET_PRESSURE] = round_to(s->outlet_bar + running * gauss(r) * 0.02, 2);
    out[IN_FLOW] = round_to(s->flow * (1.0 + running * gauss(r) * 0.005), 1);
    out[IN_POWER] = round_to(s->power_kw * (1.0 + running * gauss(r) * 0.005), 1);
    out[IN_RUN_SECONDS] = floord(s->run_s);
    out[IN_START_COUNT] = (double)s->starts;
}

/* ---- the public API ---- */

int tern_profile_open(const char *name, uint64_t seed, tern_profile **out)
{
    enum profile_kind kind;
    if (name == NULL || strcmp(name, "ev") == 0)
        kind = KIND_EV;
    else if (strcmp(name, "meter") == 0)
        kind = KIND_METER;
    else if (strcmp(name, "industrial") == 0)
        kind = KIND_INDUSTRIAL;
    else
        return TERN_EINVAL;
    tern_profile *p = tern_calloc(1, sizeof *p);
    if (p == NULL)
        return TERN_ENOMEM;
    p->kind = kind;
    p->seed = seed;
    switch (kind) {
    case KIND_EV:
        p->metrics = k_ev_metrics;
        p->n_metrics = EV_N;
        break;
    case KIND_METER:
        p->metrics = k_meter_metrics;
        p->n_metrics = MT_N;
        break;
    case KIND_INDUSTRIAL:
        p->metrics = k_industrial_metrics;
        p->n_metrics = IN_N;
        break;
    }
    *out = p;
    return 0;
}

void tern_profile_close(tern_profile *p)
{
    tern_free(p);
}

const char *tern_profile_name(const tern_profile *p)
{
    static const char *const names[] = { "ev", "meter", "industrial" };
    return names[p->kind];
}

size_t tern_profile_metric_count(const tern_profile *p)
{
    return p->n_metrics;
}

const char *tern_profile_metric_name(const tern_profile *p, size_t i)
{
    TERN_ASSERT(i < p->n_metrics);
    return p->metrics[i].name;
}

int tern_profile_metric_decimals(const tern_profile *p, size_t i)
{
    TERN_ASSERT(i < p->n_metrics);
    return p->metrics[i].decimals;
}

const char *tern_profile_metric_unit(const tern_profile *p, size_t i)
{
    TERN_ASSERT(i < p->n_metrics);
    return p->metrics[i].unit;
}

int tern_profile_device_init(const tern_profile *p, uint64_t device_index, tern_sim_device **out)
{
    tern_sim_device *d = tern_calloc(1, sizeof *d);
    if (d == NULL)
        return TERN_ENOMEM;
    d->kind = p->kind;
    d->device_index = device_index;
    rng_seed(&d->r, p->seed, device_index, 0x51ab0000ULL + (uint64_t)p->kind);
    switch (p->kind) {
    case KIND_EV:
        ev_init(p, d);
        break;
    case KIND_METER:
        meter_init(p, d);
        break;
    case KIND_INDUSTRIAL:
        industrial_init(p, d);
        break;
    }
    *out = d;
    return 0;
}

void tern_profile_device_free(tern_sim_device *d)
{
    tern_free(d);
}

static void substep(tern_sim_device *d, int64_t ts_ms, double dt)
{
    switch (d->kind) {
    case KIND_EV:
        ev_substep(d, ts_ms, dt);
        break;
    case KIND_METER:
        meter_substep(d, ts_ms, dt);
        break;
    case KIND_INDUSTRIAL:
        industrial_substep(d, ts_ms, dt);
        break;
    }
}

void tern_profile_step(const tern_profile *p, tern_sim_device *d, int64_t ts_ms, double *values)
{
    TERN_ASSERT(p->kind == d->kind);
    if (!d->started) {
        d->started = 1;
        d->last_ts_ms = ts_ms;
        switch (d->kind) {
        case KIND_EV:
            ev_first(d, ts_ms);
            break;
        case KIND_METER:
            meter_first(d, ts_ms);
            break;
        case KIND_INDUSTRIAL:
            industrial_first(d, ts_ms);
            break;
        }
        substep(d, ts_ms, 0.0); /* derive currents, voltages etc. without moving */
    } else if (ts_ms > d->last_ts_ms) {
        int64_t t = d->last_ts_ms;
        while (t < ts_ms) {
            int64_t step_ms = ts_ms - t > SUBSTEP_MS ? SUBSTEP_MS : ts_ms - t;
            t += step_ms;
            substep(d, t, (double)step_ms / 1000.0);
        }
        d->last_ts_ms = ts_ms;
    }
    switch (d->kind) {
    case KIND_EV:
        ev_outputs(d, d->last_ts_ms, values);
        break;
    case KIND_METER:
        meter_outputs(d, values);
        break;
    case KIND_INDUSTRIAL:
        industrial_outputs(d, values);
        break;
    }
    d->seq++;
}

void tern_profile_device_tags(const tern_profile *p, uint64_t device_index, char *fleet,
    size_t fcap, char *region, size_t rcap, char *model, size_t mcap)
{
    device_tags t = tags_of(p, device_index);
    const char *model_name = p->kind == KIND_EV ? k_ev_models[t.model].name
        : p->kind == KIND_METER                 ? k_meter_models[t.model]
                                                : k_industrial_models[t.model];
    snprintf(fleet, fcap, "fleet-%02u", (unsigned)t.fleet);
    snprintf(region, rcap, "%s", k_regions[t.region].name);
    snprintf(model, mcap, "%s", model_name);
}
