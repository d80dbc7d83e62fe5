// The console's words, Chinese first (the names of roles, steps, grid
// types and levels are DESIGN.md's), English the other. The choice is kept
// in localStorage: it is a preference, not a secret (the token is not).

const LANG_KEY = 'gridgate.lang';
export const LANGS = ['zh-CN', 'en'];

const zh = {
  'app.title': '网格事件指挥台',
  'app.short': '指挥台',
  'nav.cases': '事件',
  'nav.figures': '考核指标',
  'nav.signout': '退出',
  'lang.switch': 'English',
  'signin.title': '登录',
  'signin.token': 'API 令牌',
  'signin.hint': '令牌只保存在本浏览器标签页的会话中，关闭标签页即失效。',
  'signin.submit': '登录',
  'signin.refused': '令牌无效或已被撤销。',
  'signin.expired': '令牌不再有效，请重新登录。',
  'signin.signedout': '已退出。',
  'me.scope': '范围',
  'me.role': '身份',
  'list.title': '事件列表',
  'list.filters': '筛选',
  'list.street': '街道',
  'list.community': '社区',
  'list.grid': '网格',
  'list.state': '状态',
  'list.category': '类别',
  'list.severity': '等级',
  'list.overdue': '超时',
  'list.any': '全部',
  'list.open': '未结案',
  'list.yes': '是',
  'list.no': '否',
  'list.clear': '清除筛选',
  'list.empty': '没有符合条件的事件。',
  'list.count': '共 {n} 件',
  'list.more': '只显示最新的 {n} 件，请缩小筛选范围。',
  'list.updated': '更新于 {t}',
  'list.live': '实时',
  'list.stalled': '连接中断，正在重试…',
  'col.id': '编号',
  'col.title': '标题',
  'col.severity': '等级',
  'col.state': '状态',
  'col.grid': '网格',
  'col.assignee': '承办',
  'col.timeleft': '时限',
  'col.escalation': '责任层级',
  'col.opened': '上报时间',
  'case.back': '返回列表',
  'case.notfound': '找不到该事件（不存在，或不在您的范围内）。',
  'case.grid': '网格',
  'case.street': '街道',
  'case.community': '社区',
  'case.gtype': '类型',
  'case.glevel': '等级',
  'case.roster': '网格人员',
  'case.grafana': '在 Grafana 中查看该网格',
  'case.detail': '详情',
  'case.category': '类别',
  'case.severity': '事件等级',
  'case.state': '当前步骤',
  'case.assignee': '承办',
  'case.timeleft': '本步骤剩余时间',
  'case.nodeadline': '无时限',
  'case.escalation': '责任层级',
  'case.overdue': '已超时',
  'case.count': '上报次数',
  'case.rework': '返工次数',
  'case.returns': '退回次数',
  'case.score': '评价',
  'case.reporter': '报告人',
  'case.reported_by': '录入令牌',
  'case.device': '设备',
  'case.opened': '上报时间',
  'case.version': '版本',
  'case.trigger': '触发读数',
  'case.provenance': '规则来源',
  'case.rule': '规则',
  'case.rule_file': '文件',
  'case.rule_hash': '文件哈希',
  'case.reading_time': '读数时间',
  'case.history': '处理经过',
  'case.actions': '可执行的操作',
  'case.noactions': '您当前不能对该事件进行任何操作。',
  'case.changed': '该事件已被他人更新。',
  'case.reload': '重新载入',
  'case.stale': '该事件在您查看后已发生变化，操作未执行。请重新载入后再试。',
  'case.done': '已提交：{op}',
  'time.left': '剩余 {d}',
  'time.over': '超时 {d}',
  'form.note': '说明',
  'form.note_required': '说明（必填）',
  'form.role': '派遣给岗位',
  'form.person': '指定人员',
  'form.person_default': '（由该岗位的在册人员承办）',
  'form.pass': '核查通过',
  'form.fail': '核查不通过（返工）',
  'form.score': '评分',
  'form.submit': '提交',
  'hist.created': '上报',
  'hist.rework': '核查不通过，返工',
  'hist.returned': '退回重派',
  'hist.resumed': '恢复办理',
  'hist.same': '记录',
  'hist.by': '{actor}',
  'fig.title': '考核指标',
  'fig.from': '起始日期',
  'fig.to': '截止日期（含）',
  'fig.group': '分组',
  'fig.show': '查询',
  'fig.place': '地区',
  'fig.opened': '立案',
  'fig.due': '应结',
  'fig.deferred': '缓办',
  'fig.closed': '已结',
  'fig.closed_on_time': '按期结',
  'fig.closure_rate': '结案率',
  'fig.on_time_rate': '按期结案率',
  'fig.rework_rate': '返工率',
  'fig.urgent': '紧急事件结案率',
  'fig.overdue_now': '当前超时',
  'fig.open_now': '当前未结案',
  'fig.total': '合计（{scope}）',
  'fig.none': '该期间没有事件。',
  'fig.period': '{from} 至 {to}',
  'group.district': '全区',
  'group.street': '按街道',
  'group.community': '按社区',
  'group.grid': '按网格',
  'scope.district': '全区',
  'err.network': '无法连接网关。',
  'err.generic': '操作被拒绝（{status}）：{detail}',
  'err.forbidden': '无权执行该操作：{detail}',
  'err.conflict': '当前状态不允许该操作：{detail}',
  'err.bad_request': '请求有误：{detail}',
  'loading': '加载中…',
};

const en = {
  'app.title': 'Grid command console',
  'app.short': 'Console',
  'nav.cases': 'Cases',
  'nav.figures': 'Figures',
  'nav.signout': 'Sign out',
  'lang.switch': '中文',
  'signin.title': 'Sign in',
  'signin.token': 'API token',
  'signin.hint': 'The token is kept only in this browser tab\'s session and is gone when the tab closes.',
  'signin.submit': 'Sign in',
  'signin.refused': 'The token is not valid or has been revoked.',
  'signin.expired': 'The token is no longer valid: sign in again.',
  'signin.signedout': 'Signed out.',
  'me.scope': 'Scope',
  'me.role': 'Role',
  'list.title': 'Cases',
  'list.filters': 'Filters',
  'list.street': 'Street',
  'list.community': 'Community',
  'list.grid': 'Grid',
  'list.state': 'State',
  'list.category': 'Category',
  'list.severity': 'Severity',
  'list.overdue': 'Overdue',
  'list.any': 'Any',
  'list.open': 'Open',
  'list.yes': 'Yes',
  'list.no': 'No',
  'list.clear': 'Clear filters',
  'list.empty': 'No cases match.',
  'list.count': '{n} cases',
  'list.more': 'Only the newest {n} are shown: narrow the filters.',
  'list.updated': 'updated {t}',
  'list.live': 'live',
  'list.stalled': 'connection lost, retrying…',
  'col.id': 'No.',
  'col.title': 'Title',
  'col.severity': 'Severity',
  'col.state': 'State',
  'col.grid': 'Grid',
  'col.assignee': 'Assignee',
  'col.timeleft': 'Time limit',
  'col.escalation': 'Responsible',
  'col.opened': 'Opened',
  'case.back': 'Back to the list',
  'case.notfound': 'No such case (it does not exist, or it is outside your scope).',
  'case.grid': 'Grid',
  'case.street': 'Street',
  'case.community': 'Community',
  'case.gtype': 'Type',
  'case.glevel': 'Level',
  'case.roster': 'Roster',
  'case.grafana': 'This grid in Grafana',
  'case.detail': 'Detail',
  'case.category': 'Category',
  'case.severity': 'Severity',
  'case.state': 'Step',
  'case.assignee': 'Assignee',
  'case.timeleft': 'Time left in this step',
  'case.nodeadline': 'no limit',
  'case.escalation': 'Responsible level',
  'case.overdue': 'overdue',
  'case.count': 'Reports',
  'case.rework': 'Rework',
  'case.returns': 'Returns',
  'case.score': 'Score',
  'case.reporter': 'Reporter',
  'case.reported_by': 'Filed by',
  'case.device': 'Device',
  'case.opened': 'Opened',
  'case.version': 'Version',
  'case.trigger': 'Triggering reading',
  'case.provenance': 'Rule provenance',
  'case.rule': 'Rule',
  'case.rule_file': 'File',
  'case.rule_hash': 'File hash',
  'case.reading_time': 'Reading time',
  'case.history': 'History',
  'case.actions': 'What you can do',
  'case.noactions': 'You cannot act on this case now.',
  'case.changed': 'Someone else has changed this case.',
  'case.reload': 'Reload',
  'case.stale': 'The case changed since you loaded it; nothing was done. Reload and try again.',
  'case.done': 'Done: {op}',
  'time.left': '{d} left',
  'time.over': '{d} over',
  'form.note': 'Note',
  'form.note_required': 'Note (required)',
  'form.role': 'Dispatch to role',
  'form.person': 'Person',
  'form.person_default': '(whoever holds the role)',
  'form.pass': 'Verification passed',
  'form.fail': 'Verification failed (rework)',
  'form.score': 'Score',
  'form.submit': 'Submit',
  'hist.created': 'reported',
  'hist.rework': 'verification failed: rework',
  'hist.returned': 'returned for redispatch',
  'hist.resumed': 'resumed',
  'hist.same': 'note',
  'hist.by': '{actor}',
  'fig.title': 'Figures',
  'fig.from': 'From',
  'fig.to': 'To (inclusive)',
  'fig.group': 'Rows',
  'fig.show': 'Show',
  'fig.place': 'Place',
  'fig.opened': 'Opened',
  'fig.due': 'Due',
  'fig.deferred': 'Deferred',
  'fig.closed': 'Closed',
  'fig.closed_on_time': 'On time',
  'fig.closure_rate': 'Closure rate',
  'fig.on_time_rate': 'On-time rate',
  'fig.rework_rate': 'Rework rate',
  'fig.urgent': 'Urgent closure rate',
  'fig.overdue_now': 'Overdue now',
  'fig.open_now': 'Open now',
  'fig.total': 'Total ({scope})',
  'fig.none': 'No cases in this period.',
  'fig.period': '{from} to {to}',
  'group.district': 'Whole scope',
  'group.street': 'By street',
  'group.community': 'By community',
  'group.grid': 'By grid',
  'scope.district': 'District',
  'err.network': 'The gateway cannot be reached.',
  'err.generic': 'Refused ({status}): {detail}',
  'err.forbidden': 'Not allowed: {detail}',
  'err.conflict': 'Not in this state: {detail}',
  'err.bad_request': 'Bad request: {detail}',
  'loading': 'Loading…',
};

// Names of the domain's words: DESIGN.md's Chinese, the API's English.
const names = {
  'zh-CN': {
    role: {
      manager: '网格管理员', assistant: '网格助理员', police: '网格警员', supervisor: '网格督导员',
      judicial: '网格司法员', firefighter: '网格消防员', party_secretary: '网格党支部书记',
    },
    state: {
      reported: '采集上报', dispatched: '指挥派遣', handled: '处置反馈', verified: '任务核查',
      evaluated: '入库评价', closed: '结单归档', cancelled: '已取消', deferred: '缓办',
    },
    gtype: { residential: '住宅', commercial: '商务商业', institution: '企事业单位', crowded: '人员密集场所' },
    glevel: { routine: '日常管理', prevention: '一般防范', attention: '重点关注', governance: '综合治理' },
    severity: { critical: '紧急', major: '重要', minor: '一般', info: '提示' },
    escalation: { community: '社区', street: '街道', district: '区' },
    token: {
      operator: '运维', commander: '指挥中心', staff: '网格员', supervisor: '督导员',
      liaison: '联络员', readonly: '只读',
    },
    op: {
      dispatch: '派遣', feedback: '处置反馈', verify: '核查', evaluate: '评价', close: '结单归档',
      cancel: '取消', return: '退回', defer: '缓办', resume: '恢复办理',
    },
  },
  en: {
    role: {
      manager: 'grid manager', assistant: 'grid assistant', police: 'grid police officer',
      supervisor: 'grid supervisor', judicial: 'grid judicial officer', firefighter: 'grid firefighter',
      party_secretary: 'party branch secretary',
    },
    state: {
      reported: 'reported', dispatched: 'dispatched', handled: 'handled', verified: 'verified',
      evaluated: 'evaluated', closed: 'closed', cancelled: 'cancelled', deferred: 'deferred',
    },
    gtype: { residential: 'residential', commercial: 'commercial', institution: 'institution', crowded: 'crowded place' },
    glevel: { routine: 'routine', prevention: 'prevention', attention: 'attention', governance: 'governance' },
    severity: { critical: 'critical', major: 'major', minor: 'minor', info: 'info' },
    escalation: { community: 'community', street: 'street', district: 'district' },
    token: {
      operator: 'operator', commander: 'command centre', staff: 'grid staff', supervisor: 'supervisor',
      liaison: 'liaison', readonly: 'read-only',
    },
    op: {
      dispatch: 'Dispatch', feedback: 'Feedback', verify: 'Verify', evaluate: 'Evaluate', close: 'Close',
      cancel: 'Cancel', return: 'Return', defer: 'Defer', resume: 'Resume',
    },
  },
};

const dicts = { 'zh-CN': zh, en };

let current = (() => {
  let saved = null;
  try { saved = localStorage.getItem(LANG_KEY); } catch { /* storage off: default */ }
  return LANGS.includes(saved) ? saved : 'zh-CN';
})();

export function lang() { return current; }

export function setLang(l) {
  if (!LANGS.includes(l)) return;
  current = l;
  try { localStorage.setItem(LANG_KEY, l); } catch { /* not kept: fine */ }
  document.documentElement.lang = l;
}

// t('list.count', {n: 3}): the text in the current language, {names} filled.
export function t(key, params) {
  const text = dicts[current][key] ?? zh[key] ?? key;
  if (!params) return text;
  return text.replace(/\{(\w+)\}/g, (m, k) => (k in params ? String(params[k]) : m));
}

// name('state', 'dispatched') -> 指挥派遣; an unknown value shows as itself.
export function name(kind, value) {
  if (value == null) return '';
  return names[current][kind]?.[value] ?? String(value);
}

export function namesOf(kind) { return Object.keys(names['zh-CN'][kind]); }

// Durations as people read them: 1 d 2 h, 3 h 5 min, 4 min 10 s.
export function duration(ms) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60), sec = s % 60;
  const u = current === 'en' ? { d: 'd', h: 'h', m: 'min', s: 's' } : { d: '天', h: '小时', m: '分', s: '秒' };
  const sep = current === 'en' ? ' ' : '';
  const part = (n, unit) => `${n}${sep}${unit}`;
  if (d) return `${part(d, u.d)} ${part(h, u.h)}`;
  if (h) return `${part(h, u.h)} ${part(m, u.m)}`;
  if (m) return `${part(m, u.m)} ${part(sec, u.s)}`;
  return part(sec, u.s);
}

export function dateTime(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return new Intl.DateTimeFormat(current, {
    year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit', second: '2-digit',
    hour12: false,
  }).format(d);
}

export function percent(rate) {
  if (rate == null) return '—';
  return `${(rate * 100).toFixed(1)}%`;
}

document.documentElement.lang = current;
