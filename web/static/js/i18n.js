// Simplified Chinese first, English on request. The choice lives in localStorage so every page
// (and the next visit) keeps it. Static text in pages carries data-i18n="key"; scripts call t().
const STORE = "linli.lang";

const TEXT = {
  brand: ["邻里", "Linli"],
  loading: ["加载中…", "Loading…"],
  login: ["登录", "Sign in"],
  logout: ["退出", "Sign out"],
  lang_switch: ["English", "中文"],
  username: ["用户名", "Username"],
  password: ["密码", "Password"],
  login_failed: ["登录失败", "Sign-in failed"],
  login_title: ["登录邻里", "Sign in to Linli"],
  home_title: ["正在直播与即将开播", "Live now and coming up"],
  no_sessions: ["暂时没有直播", "No sessions yet"],
  status_live: ["直播中", "Live"],
  status_scheduled: ["即将开播", "Scheduled"],
  status_ended: ["已结束", "Ended"],
  session_ended: ["直播已结束", "This live session has ended"],
  watch_replay: ["观看回放", "Watch the replay"],
  watch: ["进入直播间", "Watch"],
  nav_home: ["首页", "Home"],
  nav_replays: ["回放", "Replays"],
  nav_orders: ["我的订单", "My orders"],
  nav_dashboard: ["看板", "Dashboard"],
  // live room
  video_connecting: ["正在连接视频…", "Connecting video…"],
  video_webrtc: ["低延迟播放", "Low-latency (WebRTC)"],
  video_hls: ["标准播放 (HLS)", "Standard (HLS)"],
  video_offline: ["主播还没开播,稍后自动播放", "Not live yet; playback starts automatically"],
  video_tap_sound: ["点击开启声音", "Tap for sound"],
  explaining: ["讲解中", "Now explaining"],
  batch: ["批次", "Batch"],
  qc_report: ["质检报告", "QC report"],
  qc_pass: ["合格", "passed"],
  qc_fail: ["不合格", "failed"],
  no_pin: ["主播还没有上架商品", "No product pinned yet"],
  sale_ends_in: ["距结束", "Ends in"],
  sale_starts_in: ["距开抢", "Starts in"],
  stock_left: ["剩余", "Left"],
  units: ["份", "units"],
  gift_left: ["前N名赠品剩余", "Gifts left"],
  buy: ["立即抢购", "Buy now"],
  sold_out: ["已售罄", "Sold out"],
  sale_not_open: ["未开始", "Not open yet"],
  sale_ended: ["已结束", "Ended"],
  over_limit: ["超过限购数量", "Over the per-buyer limit"],
  not_member: ["仅限本小区邻居购买", "Members of the community only"],
  hold_title: ["已为您锁定,请在倒计时内支付", "Reserved for you: pay before the timer ends"],
  pay: ["确认支付", "Pay"],
  pay_expired: ["支付超时,名额已释放", "Payment window expired; the unit was released"],
  order_paid: ["支付成功", "Payment done"],
  pickup_point: ["自提点", "Pickup point"],
  pickup_code: ["取货码", "Pickup code"],
  order_no: ["订单号", "Order"],
  view_orders: ["查看我的订单", "See my orders"],
  group_buys: ["小区拼团", "Community group-buys"],
  group_more: ["再有{n}位成团", "{n} more to succeed"],
  group_done: ["已成团", "Succeeded"],
  comments: ["评论", "Comments"],
  comment_placeholder: ["说点什么…", "Say something…"],
  send: ["发送", "Send"],
  ask: ["提问", "Ask"],
  ask_placeholder: ["向主播提问,助理审核后展示", "Ask the host (shown after review)"],
  question_sent: ["问题已提交,等待助理审核", "Question sent; waiting for review"],
  questions: ["问答", "Q&A"],
  answer: ["回答", "Answer"],
  upvote: ["同问", "Me too"],
  like: ["点赞", "Like"],
  viewers: ["观看", "Watching"],
  likes: ["赞", "Likes"],
  login_to_join: ["登录后可评论、提问和购买", "Sign in to comment, ask and buy"],
  reconnecting: ["网络中断,正在重连…", "Connection lost, reconnecting…"],
  reconnected: ["已重连,补上了{n}条消息", "Reconnected; {n} missed messages caught up"],
  reload_needed: ["离开太久,已重新加载最新内容", "Away too long; reloaded the latest"],
  refused: ["操作被拒绝", "Refused"],
  muted_notice: ["你已被禁言,至 {until}", "You are muted until {until}"],
  unmuted_notice: ["你已被解除禁言", "You may comment again"],
  banned_notice: ["你已被移出直播间,至 {until}", "You were removed from this room until {until}"],
  forever: ["永久", "further notice"],
  // host console
  host_title: ["主播控制台", "Host console"],
  camera: ["摄像头", "Camera"],
  microphone: ["麦克风", "Microphone"],
  go_live: ["开始直播", "Go live"],
  end_session: ["结束直播", "End the session"],
  end_confirm: ["确定结束直播?结束后将生成回放。", "End the session? The replay will be built."],
  health: ["推流状态", "Stream health"],
  bitrate: ["码率", "Bitrate"],
  fps: ["帧率", "FPS"],
  rtt: ["延迟", "RTT"],
  lost: ["丢包", "Lost"],
  publishing: ["直播中", "Live"],
  not_publishing: ["未推流", "Not streaming"],
  publisher_source: ["推流来源:{kind},{since} 起", "Stream source: {kind}, since {since}"],
  source_whip: ["浏览器/WHIP", "browser / WHIP"],
  source_rtmp: ["RTMP 推流软件", "RTMP app"],
  source_demo: ["演示画面", "demo picture"],
  taken_over: ["已由其他设备接管推流", "Another device took over the stream"],
  products: ["商品", "Products"],
  pin: ["讲解", "Pin"],
  unpin: ["取消讲解", "Unpin"],
  add_product: ["新增商品", "Add product"],
  product_name: ["商品名", "Product name"],
  price_yuan: ["价格(元)", "Price (yuan)"],
  flash_sale: ["限时秒杀", "Flash sale"],
  open_sale: ["开启秒杀", "Open sale"],
  close_sale: ["关闭秒杀", "Close sale"],
  stock: ["库存", "Stock"],
  per_buyer_limit: ["每人限购", "Per buyer"],
  duration_min: ["时长(分钟)", "Duration (min)"],
  gift_first_n: ["前N名赠品", "Gift to first N"],
  group_buy: ["拼团", "Group-buy"],
  open_group: ["开启拼团", "Open group-buy"],
  community: ["小区", "Community"],
  threshold: ["成团人数", "Threshold"],
  group_price_yuan: ["拼团价(元)", "Group price (yuan)"],
  approved_questions: ["已通过的问题", "Approved questions"],
  answered: ["已回答", "Answered"],
  unanswered: ["待回答", "Not answered"],
  counters: ["实时数据", "Live counters"],
  sold: ["已售", "Sold"],
  held: ["待支付", "Held"],
  // moderation
  mod_title: ["助理审核台", "Moderation console"],
  pending_questions: ["待审核问题", "Pending questions"],
  approve: ["通过", "Approve"],
  reject: ["拒绝", "Reject"],
  merge: ["合并", "Merge"],
  merge_into: ["合并到问题编号", "Merge into question #"],
  answer_placeholder: ["输入回答", "Type the answer"],
  pin_question: ["置顶", "Pin"],
  unpin_question: ["取消置顶", "Unpin"],
  mute_label: ["禁言", "Muted"],
  ban_label: ["封禁", "Banned"],
  delete: ["删除", "Delete"],
  mute: ["禁言10分钟", "Mute 10 min"],
  ban: ["封禁", "Ban"],
  banned_words: ["违禁词", "Banned words"],
  banned_words_hint: ["每行一个", "One per line"],
  slow_mode: ["慢速模式(秒)", "Slow mode (s)"],
  save: ["保存", "Save"],
  saved: ["已保存", "Saved"],
  // replays
  replays_title: ["直播回放", "Replays"],
  no_replays: ["还没有回放", "No replays yet"],
  chapters: ["商品讲解", "Product chapters"],
  jump_chapter: ["讲解回放", "Jump to explanation"],
  processing: ["回放生成中 {p}%", "Building the replay {p}%"],
  replay_failed: ["回放生成失败", "Replay build failed"],
  replay_missing: ["这场直播没有回放", "No replay for this session"],
  replay_while_live: ["直播进行中,结束后生成回放。", "Still live; the replay is built when it ends."],
  qa_about: ["相关问答", "Q&A about it"],
  // orders
  orders_title: ["我的订单", "My orders"],
  no_orders: ["还没有订单", "No orders yet"],
  refund_hint: ["取货前如需退款,请在直播间联系助理", "To get a refund before pickup, ask the assistant in the live room"],
  after_sales: ["售后", "After-sales"],
  claim_submit: ["提交售后申请", "File the claim"],
  claim_pending: ["已提交,助理会尽快处理", "Filed; the assistant will handle it soon"],
  claim_approved: ["已同意,退款已发起", "Approved; refund on its way"],
  claim_rejected: ["未通过", "Not approved"],
  order_status_held: ["待支付", "Awaiting payment"],
  order_status_paid: ["已支付", "Paid"],
  order_status_ready_for_pickup: ["待自提", "Ready for pickup"],
  order_status_picked_up: ["已取货", "Picked up"],
  order_status_delivered: ["已送达", "Delivered"],
  order_status_completed: ["已完成", "Completed"],
  order_status_expired: ["已过期", "Expired"],
  order_status_cancelled: ["已取消", "Cancelled"],
  order_status_refunded: ["已退款", "Refunded"],
  // trace & dashboard
  trace_title: ["批次溯源", "Batch trace"],
  trace_journey: ["流转记录", "Journey"],
  farm: ["农场", "Farm"],
  plot: ["地块", "Plot"],
  harvested: ["采摘时间", "Harvested"],
  lookups: ["查看次数", "Look-ups"],
  trace_ok: ["✓ 记录完整,未被改动", "✓ Records verified, unchanged"],
  trace_broken: ["✗ 记录被改动过", "✗ Records were altered"],
  dashboard_title: ["信任看板", "Trust dashboard"],
  dashboard_by: ["维度", "Group by"],
  by_session: ["按场次", "By session"],
  by_farm: ["按农场", "By farm"],
  by_community: ["按小区", "By community"],
  dashboard_days: ["最近天数", "Last N days"],
  refresh: ["刷新", "Refresh"],
  export_csv: ["导出CSV", "Export CSV"],
  api_endpoints: ["公开接口", "Public endpoints"],
  not_available: ["该功能尚未开放", "Not available yet"],
  not_found: ["未找到", "Not found"],
  error: ["出错了", "Something went wrong"],
};

export function lang() {
  const stored = localStorage.getItem(STORE);
  return stored === "en" ? "en" : "zh";
}

export function setLang(value) {
  localStorage.setItem(STORE, value === "en" ? "en" : "zh");
  document.documentElement.lang = value === "en" ? "en" : "zh-CN";
}

/** The text for `key` in the current language, with {name} placeholders filled in. */
export function t(key, vars = {}) {
  const pair = TEXT[key];
  let text = pair ? pair[lang() === "en" ? 1 : 0] : key;
  for (const [name, value] of Object.entries(vars)) text = text.replaceAll(`{${name}}`, String(value));
  return text;
}

/** Fill every [data-i18n] / [data-i18n-placeholder] under root (textContent only). */
export function applyI18n(root = document) {
  document.documentElement.lang = lang() === "en" ? "en" : "zh-CN";
  for (const el of root.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll("[data-i18n-placeholder]")) {
    el.placeholder = t(el.dataset.i18nPlaceholder);
    // Inputs known only by their placeholder still need a name for screen readers.
    if (!el.labels || el.labels.length === 0) el.setAttribute("aria-label", el.placeholder);
  }
}

export function hasKey(key) {
  return Object.hasOwn(TEXT, key);
}
